/*
 * Sharing a weft_shmq with processes that did not inherit it: by name
 * (held by the creating process, nothing in /dev/shm, gone with it), by a
 * persistent name (a 0600 file made with O_EXCL, until unlinked), and by
 * an fd passed over a Unix socket. Names are validated, and no process
 * killed with SIGKILL, the creator included, leaves anything in /dev/shm.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "shmq_test_util.h"

WEFT_TEST_TIMEOUT(60)

/* Every name a test uses ends in -<the test process's pid>, so that tests
 * running in parallel do not see each other's entries. */
static int test_pid;
static char name_buf[64];
static const char *test_name(const char *what) {
  if (!test_pid) test_pid = (int)getpid();
  snprintf(name_buf, sizeof name_buf, "t-%s-%d", what, test_pid);
  return name_buf;
}

/* Entries of /dev/shm that this test made: "weft" and its pid in the name
 * (none are ever expected, except a persistent queue's). */
static int dev_shm_weft_entries(void) {
  if (!test_pid) test_pid = (int)getpid();
  char tag[24];
  snprintf(tag, sizeof tag, "-%d", test_pid);
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += strstr(e->d_name, "weft") != NULL && strstr(e->d_name, tag) != NULL;
  closedir(d);
  return n;
}

static int open_put_hi(void *arg) {
  const char *name = arg;
  weft_shmq *q = NULL;
  int rc = weft_shmq_open(&q, name);
  if (rc != 0) return 1;
  if (weft_shmq_put(q, "hi", 2, WEFT_FOREVER) != 0) return 2;
  weft_shmq_destroy(q);
  return 0;
}

TEST(named_queue_lives_with_its_creator_not_in_dev_shm) {
  int before = dev_shm_weft_entries();
  const char *name = test_name("named");
  weft_shmq *q = NULL, *q2 = NULL;
  weft_shmq_opts o = {.name = name};
  ASSERT_OK(weft_shmq_create(&q, &o));
  ASSERT_ERR(weft_shmq_create(&q2, &o), WEFT_EEXIST);
  ASSERT_EQ(dev_shm_weft_entries(), before);
  pid_t c = spawn(open_put_hi, (void *)name);
  ASSERT_EQ(reap(c), 0);
  char b[8];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, WEFT_FOREVER));
  ASSERT(len == 2 && memcmp(b, "hi", 2) == 0);
  /* A second opener in this very process works too. */
  ASSERT_OK(weft_shmq_open(&q2, name));
  ASSERT_OK(weft_shmq_put(q2, "x", 1, 0));
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  weft_shmq_destroy(q2);
  weft_shmq_destroy(q);
  ASSERT_ERR(weft_shmq_open(&q2, name), WEFT_ENOENT);
  ASSERT_EQ(dev_shm_weft_entries(), before);
}

typedef struct creator_arg {
  char name[64];
  int ready_fd;
} creator_arg;

static int create_and_wait(void *arg) {
  creator_arg *a = arg;
  weft_shmq *q = NULL;
  weft_shmq_opts o = {.name = a->name};
  if (weft_shmq_create(&q, &o) != 0) return 1;
  if (weft_shmq_put(q, "from creator", 12, 0) != 0) return 2;
  if (write(a->ready_fd, "r", 1) != 1) return 3;
  pause(); /* until SIGKILL */
  return 0;
}

TEST(creator_sigkilled_leaves_nothing_and_openers_go_on) {
  int before = dev_shm_weft_entries();
  creator_arg a;
  snprintf(a.name, sizeof a.name, "%s", test_name("killed"));
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  a.ready_fd = p[1];
  pid_t c = spawn(create_and_wait, &a);
  char r;
  ASSERT_EQ(read(p[0], &r, 1), 1);
  weft_shmq *q = NULL;
  ASSERT_OK(weft_shmq_open(&q, a.name));
  kill(c, SIGKILL);
  ASSERT_EQ(reap(c), 128 + SIGKILL);
  char b[16];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  ASSERT(len == 12 && memcmp(b, "from creator", 12) == 0);
  ASSERT_OK(weft_shmq_put(q, "after", 5, 0));
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  weft_shmq *q2 = NULL;
  ASSERT_ERR(weft_shmq_open(&q2, a.name), WEFT_ENOENT); /* the name died with it */
  weft_shmq_destroy(q);
  ASSERT_EQ(dev_shm_weft_entries(), before);
  close(p[0]);
  close(p[1]);
}

TEST(persistent_queue_is_a_0600_file_until_unlinked) {
  const char *name = test_name("persist");
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/weft.shmq.%s", name);
  weft_shmq *q = NULL, *q2 = NULL;
  weft_shmq_opts o = {.name = name, .flags = WEFT_SHMQ_PERSISTENT};
  ASSERT_OK(weft_shmq_create(&q, &o));
  struct stat st;
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT(S_ISREG(st.st_mode));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_ERR(weft_shmq_create(&q2, &o), WEFT_EEXIST); /* O_EXCL */
  weft_shmq_opts o2 = {.name = name};
  ASSERT_ERR(weft_shmq_create(&q2, &o2), WEFT_EEXIST);
  weft_shmq_destroy(q); /* the queue stays */
  pid_t c = spawn(open_put_hi, (void *)name);
  ASSERT_EQ(reap(c), 0);
  ASSERT_OK(weft_shmq_open(&q, name));
  char b[8];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, 0));
  ASSERT(len == 2 && memcmp(b, "hi", 2) == 0);
  ASSERT_OK(weft_shmq_unlink(name));
  ASSERT_ERR(stat(path, &st), -1);
  ASSERT_ERR(weft_shmq_unlink(name), WEFT_ENOENT);
  ASSERT_ERR(weft_shmq_open(&q2, name), WEFT_ENOENT);
  ASSERT_OK(weft_shmq_put(q, "still", 5, 0)); /* the open handle goes on */
  weft_shmq_destroy(q);
}

TEST(names_are_validated) {
  weft_shmq *q = NULL;
  const char *bad[] = {"", ".hidden", "a/b", "a b", "caf\xc3\xa9", "new\nline", "x*"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    weft_shmq_opts o = {.name = bad[i]};
    ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_EINVAL);
    ASSERT_ERR(weft_shmq_open(&q, bad[i]), WEFT_EINVAL);
    ASSERT_ERR(weft_shmq_unlink(bad[i]), WEFT_EINVAL);
  }
  char longest[65];
  memset(longest, 'n', 64);
  longest[64] = '\0';
  weft_shmq_opts o = {.name = longest};
  ASSERT_OK(weft_shmq_create(&q, &o)); /* 64 characters: fine */
  weft_shmq_destroy(q);
  char too_long[66];
  memset(too_long, 'n', 65);
  too_long[65] = '\0';
  o.name = too_long;
  ASSERT_ERR(weft_shmq_create(&q, &o), WEFT_ENAMETOOLONG);
  ASSERT_ERR(weft_shmq_open(&q, too_long), WEFT_ENAMETOOLONG);
  ASSERT_ERR(weft_shmq_open(&q, "no-such-queue-here"), WEFT_ENOENT);
}

/* ------------------------------------------------ fd over a socket */

static int recv_fd_and_put(void *arg) {
  int sock = *(int *)arg;
  char byte;
  char ctl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {&byte, 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                     .msg_controllen = sizeof ctl};
  if (recvmsg(sock, &m, 0) != 1) return 1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return 2;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  weft_shmq *q = NULL;
  if (weft_shmq_open_fd(&q, fd) != 0) return 3;
  close(fd);
  if (weft_shmq_put(q, "via fd", 6, WEFT_FOREVER) != 0) return 4;
  weft_shmq_destroy(q);
  return 0;
}

TEST(fd_passed_over_a_unix_socket) {
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
  pid_t c = spawn(recv_fd_and_put, &sp[1]); /* forked before the queue exists */
  weft_shmq *q = NULL;
  ASSERT_OK(weft_shmq_create(&q, NULL));
  int fd = weft_shmq_fd(q);
  char byte = 'q';
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof ctl);
  struct iovec iov = {&byte, 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                     .msg_controllen = sizeof ctl};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  ASSERT_EQ(sendmsg(sp[0], &m, 0), 1);
  char b[8];
  size_t len;
  ASSERT_OK(weft_shmq_get(q, b, sizeof b, &len, weft_deadline_in_s(20)));
  ASSERT(len == 6 && memcmp(b, "via fd", 6) == 0);
  ASSERT_EQ(reap(c), 0);
  weft_shmq_destroy(q);
  close(sp[0]);
  close(sp[1]);
}

static int make_queues_and_hang(void *arg) {
  (void)arg;
  weft_shmq *q[3];
  weft_shmq_opts o = {.name = test_name("hang")};
  if (weft_shmq_create(&q[0], NULL) != 0 || weft_shmq_create(&q[1], &o) != 0) return 1;
  if (weft_shmq_put(q[0], "x", 1, 0) != 0) return 2;
  if (weft_shmq_open(&q[2], o.name) != 0) return 3;
  raise(SIGSTOP);
  return 0;
}

TEST(sigkill_of_any_user_leaves_dev_shm_clean) {
  int before = dev_shm_weft_entries();
  ASSERT_EQ(before, 0);
  for (int i = 0; i < 5; i++) {
    pid_t c = spawn(make_queues_and_hang, NULL);
    wait_stopped(c);
    kill(c, SIGKILL);
    ASSERT_EQ(reap(c), 128 + SIGKILL);
  }
  ASSERT_EQ(dev_shm_weft_entries(), before);
}
