/*
 * Shared-memory segments (memfd, memfd with a name held by an abstract Unix
 * socket, or a persistent /dev/shm file) and process liveness from /proc.
 * See shm.h for what each kind is for.
 *
 * How a named, non-persistent segment is found without a file: the creator
 * binds and listens on the abstract socket "\0weft.shmq.<name>" (bind is
 * exclusive, so the name is taken at most once, and the kernel drops it when
 * the last process holding the socket exits, however it exits) and names
 * its memfd "weft.shmq.<name>". An opener connects (the connection only
 * waits in the listen backlog: nobody needs to accept it), reads the
 * holder's pid with SO_PEERCRED, finds the memfd among /proc/<pid>/fd by its
 * link text and opens that link, which gives it the very same memory. This
 * needs the permission to read the holder's /proc entries: the same user.
 * The holder drains the backlog from time to time (weft__shm_service).
 *
 * Locking: none (see shm.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "process/shm.h"
#include "weft/common.h"

#define PREFIX "weft.shmq."

static size_t page_size(void) {
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? (size_t)p : 4096;
}

int weft__shm_name_check(const char *name) {
  if (!name || !name[0] || name[0] == '.') return WEFT_EINVAL;
  size_t n = 0;
  for (const char *c = name; *c; c++, n++) {
    if (n >= WEFT__SHM_NAME_MAX) return WEFT_ENAMETOOLONG;
    bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-';
    if (!ok) return WEFT_EINVAL;
  }
  return 0;
}

/* The address of the abstract socket for name; returns its length. */
static socklen_t abstract_addr(struct sockaddr_un *a, const char *name) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, PREFIX "%s", name);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void shm_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "/" PREFIX "%s", name);
}

/* Map fd's first size bytes between two guard pages. */
static int map_fd(weft__shm *s, int fd, size_t size) {
  size_t pg = page_size();
  if (size == 0 || size % pg != 0 || size > SIZE_MAX - 2 * pg) return WEFT_EINVAL;
  void *resv = mmap(NULL, size + 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
  if (resv == MAP_FAILED) return -errno;
  void *base = mmap((char *)resv + pg, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (base == MAP_FAILED) {
    int e = -errno;
    munmap(resv, size + 2 * pg);
    return e;
  }
  s->resv = resv;
  s->resv_size = size + 2 * pg;
  s->base = base;
  s->size = size;
  return 0;
}

static void init_empty(weft__shm *s) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->sock = -1;
}

int weft__shm_create(weft__shm *s, size_t size, const char *name, bool persistent) {
  init_empty(s);
  size_t pg = page_size();
  if (size == 0 || size > SIZE_MAX - pg) return WEFT_EINVAL;
  size = (size + pg - 1) / pg * pg;
  int rc;
  if (name) {
    if ((rc = weft__shm_name_check(name)) != 0) return rc;
  } else if (persistent) {
    return WEFT_EINVAL;
  }
  if (persistent) {
    char path[WEFT__SHM_NAME_MAX + 32];
    shm_path(path, sizeof path, name);
    s->fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (s->fd < 0) return -errno;
    rc = ftruncate(s->fd, (off_t)size) != 0 ? -errno : map_fd(s, s->fd, size);
    if (rc != 0) {
      shm_unlink(path);
      close(s->fd);
      init_empty(s);
      return rc;
    }
    return 0;
  }
  char mname[WEFT__SHM_NAME_MAX + 16];
  snprintf(mname, sizeof mname, PREFIX "%s", name ? name : "anon");
  if (name) {
    s->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->sock < 0) return -errno;
    struct sockaddr_un a;
    socklen_t alen = abstract_addr(&a, name);
    if (bind(s->sock, (struct sockaddr *)&a, alen) != 0) {
      rc = errno == EADDRINUSE ? WEFT_EEXIST : -errno;
      goto out_sock;
    }
    /* A persistent queue of the same name would shadow this one. */
    char path[WEFT__SHM_NAME_MAX + 32];
    shm_path(path, sizeof path, name);
    struct stat st;
    char devpath[WEFT__SHM_NAME_MAX + 48];
    snprintf(devpath, sizeof devpath, "/dev/shm%s", path);
    if (stat(devpath, &st) == 0) {
      rc = WEFT_EEXIST;
      goto out_sock;
    }
    if (listen(s->sock, SOMAXCONN) != 0) {
      rc = -errno;
      goto out_sock;
    }
  }
  s->fd = memfd_create(mname, MFD_CLOEXEC);
  if (s->fd < 0) {
    rc = -errno;
    goto out_sock;
  }
  if (ftruncate(s->fd, (off_t)size) != 0) {
    rc = -errno;
    goto out_fd;
  }
  if ((rc = map_fd(s, s->fd, size)) != 0) goto out_fd;
  return 0;
out_fd:
  close(s->fd);
out_sock:
  if (s->sock >= 0) close(s->sock);
  init_empty(s);
  return rc;
}

static int map_opened(weft__shm *s, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) return WEFT_ECORRUPT;
  int rc = map_fd(s, fd, (size_t)st.st_size);
  return rc == WEFT_EINVAL ? WEFT_ECORRUPT : rc;
}

/* Find the memfd of the queue name held by a live process: see the top. */
static int open_held(const char *name) {
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c < 0) return -errno;
  struct sockaddr_un a;
  socklen_t alen = abstract_addr(&a, name);
  int rc;
  if (connect(c, (struct sockaddr *)&a, alen) != 0) {
    rc = (errno == ECONNREFUSED || errno == ENOENT) ? WEFT_ENOENT : -errno;
    close(c);
    return rc;
  }
  struct ucred cred;
  socklen_t clen = sizeof cred;
  rc = getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ? -errno : 0;
  close(c);
  if (rc != 0) return rc;
  char dir[64], want[WEFT__SHM_NAME_MAX + 48];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)cred.pid);
  snprintf(want, sizeof want, "/memfd:" PREFIX "%s (deleted)", name);
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? WEFT_ENOENT : -errno;
  rc = WEFT_ENOENT;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char link[320], text[WEFT__SHM_NAME_MAX + 64];
    snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
    ssize_t n = readlink(link, text, sizeof text - 1);
    if (n < 0) continue;
    text[n] = '\0';
    if (strcmp(text, want) != 0) continue;
    int fd = open(link, O_RDWR | O_CLOEXEC);
    rc = fd >= 0 ? fd : -errno;
    break;
  }
  closedir(d);
  return rc;
}

int weft__shm_open_name(weft__shm *s, const char *name) {
  init_empty(s);
  int rc = weft__shm_name_check(name);
  if (rc != 0) return rc;
  char path[WEFT__SHM_NAME_MAX + 32];
  shm_path(path, sizeof path, name);
  int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0 && errno != ENOENT) return -errno;
  if (fd < 0 && (fd = open_held(name)) < 0) return fd;
  if ((rc = map_opened(s, fd)) != 0) {
    close(fd);
    init_empty(s);
    return rc;
  }
  s->fd = fd;
  return 0;
}

int weft__shm_open_fd(weft__shm *s, int fd) {
  init_empty(s);
  if (fd < 0) return WEFT_EBADF;
  int mine = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (mine < 0) return -errno;
  int rc = map_opened(s, mine);
  if (rc != 0) {
    close(mine);
    init_empty(s);
    return rc;
  }
  s->fd = mine;
  return 0;
}

void weft__shm_close(weft__shm *s) {
  if (s->resv) munmap(s->resv, s->resv_size);
  if (s->fd >= 0) close(s->fd);
  if (s->sock >= 0) close(s->sock);
  init_empty(s);
}

int weft__shm_unlink(const char *name) {
  int rc = weft__shm_name_check(name);
  if (rc != 0) return rc;
  char path[WEFT__SHM_NAME_MAX + 32];
  shm_path(path, sizeof path, name);
  return shm_unlink(path) == 0 ? 0 : -errno;
}

void weft__shm_service(weft__shm *s) {
  if (s->sock < 0) return;
  int c;
  while ((c = accept4(s->sock, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(c);
}

/* ------------------------------------------------------------ liveness */

/* State and start time of pid from /proc/<pid>/stat; 0, or -errno. */
static int read_stat(int32_t pid, char *state, uint64_t *start) {
  char path[48], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int e = errno;
  close(fd);
  if (n <= 0) return n < 0 ? -e : WEFT_EIO;
  buf[n] = '\0';
  /* "pid (comm) S ppid ...": comm may hold spaces and ')', so the fields
   * start after the last ')'. The state is field 3, the start time 22. */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return WEFT_EIO;
  p += 2;
  *state = *p;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return WEFT_EIO;
    p++;
  }
  *start = strtoull(p, NULL, 10);
  return 0;
}

static _Atomic int32_t self_pid;
static _Atomic uint64_t self_start;

uint64_t weft__proc_self_start(void) {
  int32_t pid = (int32_t)getpid();
  if (atomic_load_explicit(&self_pid, memory_order_acquire) == pid)
    return atomic_load_explicit(&self_start, memory_order_relaxed);
  char st;
  uint64_t start = 0;
  if (read_stat(pid, &st, &start) != 0) start = 0;
  atomic_store_explicit(&self_start, start, memory_order_relaxed);
  atomic_store_explicit(&self_pid, pid, memory_order_release);
  return start;
}

int weft__proc_alive(int32_t pid, uint64_t start) {
  if (pid <= 0) return 0;
  char st;
  uint64_t s;
  int rc = read_stat(pid, &st, &s);
  if (rc == -ENOENT || rc == -ESRCH) return 0;
  if (rc != 0) return 1; /* cannot tell: never declare a process dead on a guess */
  if (st == 'Z' || st == 'X' || st == 'x') return 0;
  return s == start;
}

int weft__proc_alive_pid(int32_t pid) {
  if (pid <= 0) return 0;
  char st;
  uint64_t s;
  int rc = read_stat(pid, &st, &s);
  if (rc == -ENOENT || rc == -ESRCH) return 0;
  if (rc != 0) return 1;
  return !(st == 'Z' || st == 'X' || st == 'x');
}
