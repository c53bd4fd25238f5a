/*
 * Tests for error codes and names (src/common/error.c): weft's own codes,
 * every errno glibc knows, the gaps, and the library version.
 */
#define _GNU_SOURCE
#include <string.h>

#include "weft_test.h"

TEST(names_of_own_codes) {
  ASSERT_STR_EQ(weft_err_name(WEFT_EFULL), "WEFT_EFULL");
  ASSERT_STR_EQ(weft_err_name(WEFT_ESHUTDOWN), "WEFT_ESHUTDOWN");
  ASSERT_STR_EQ(weft_strerror(WEFT_EEMPTY), "queue is empty");
}

TEST(names_of_system_codes) {
  ASSERT_EQ(WEFT_ETIMEDOUT, -ETIMEDOUT);
  ASSERT_STR_EQ(weft_err_name(WEFT_ETIMEDOUT), "ETIMEDOUT");
  ASSERT_STR_EQ(weft_strerror(WEFT_ENOMEM), "Cannot allocate memory");
  ASSERT_STR_EQ(weft_err_name(0), "OK");
}

TEST(unknown_codes) {
  ASSERT_STR_EQ(weft_err_name(12345), "UNKNOWN");
  ASSERT_STR_EQ(weft_strerror(-29999), "unknown error");
  ASSERT_STR_EQ(weft_err_name(WEFT_ERRNO_LAST - 1), "UNKNOWN");
  ASSERT_STR_EQ(weft_strerror(INT32_MIN), "unknown error");
}

/* weft's own codes, listed here independently of error.c's table. */
static const int own_codes[] = {
    WEFT_ESHUTDOWN,   WEFT_EBROKEN, WEFT_EWORKERDIED, WEFT_ETASKFAILED, WEFT_EPEERDIED,
    WEFT_ENOTASK,     WEFT_EFULL,   WEFT_EEMPTY,      WEFT_ECORRUPT,
};
#define N_OWN (sizeof own_codes / sizeof own_codes[0])

TEST(own_codes_fill_their_range) {
  /* Every code from BASE-1 down to LAST is one of ours, and none is
   * missing from the list above (a new code must be added to both). */
  ASSERT_EQ(WEFT_ERRNO_BASE - WEFT_ERRNO_LAST, (int)N_OWN);
  for (size_t i = 0; i < N_OWN; i++) {
    ASSERT_LT(own_codes[i], WEFT_ERRNO_BASE);
    ASSERT_GE(own_codes[i], WEFT_ERRNO_LAST);
    ASSERT_LT(own_codes[i], -4096); /* below every errno (MAX_ERRNO) */
  }
}

TEST(own_codes_have_distinct_names_and_descriptions) {
  for (size_t i = 0; i < N_OWN; i++) {
    const char *name = weft_err_name(own_codes[i]);
    const char *desc = weft_strerror(own_codes[i]);
    ASSERT_NOT_NULL(name);
    ASSERT_NOT_NULL(desc);
    ASSERT_EQ(strncmp(name, "WEFT_E", 6), 0);
    ASSERT(strcmp(desc, "unknown error") != 0);
    ASSERT_GT(strlen(desc), 5);
    for (size_t j = 0; j < i; j++) {
      if (strcmp(name, weft_err_name(own_codes[j])) == 0)
        weft_test_fail(__FILE__, __LINE__, "codes %d and %d share name %s", own_codes[i],
                       own_codes[j], name);
      if (strcmp(desc, weft_strerror(own_codes[j])) == 0)
        weft_test_fail(__FILE__, __LINE__, "codes %d and %d share description \"%s\"",
                       own_codes[i], own_codes[j], desc);
    }
  }
}

TEST(own_code_names_match_macros) {
#define CHECK_NAME(code) ASSERT_STR_EQ(weft_err_name(code), #code)
  CHECK_NAME(WEFT_ESHUTDOWN);
  CHECK_NAME(WEFT_EBROKEN);
  CHECK_NAME(WEFT_EWORKERDIED);
  CHECK_NAME(WEFT_ETASKFAILED);
  CHECK_NAME(WEFT_EPEERDIED);
  CHECK_NAME(WEFT_ENOTASK);
  CHECK_NAME(WEFT_EFULL);
  CHECK_NAME(WEFT_EEMPTY);
  CHECK_NAME(WEFT_ECORRUPT);
#undef CHECK_NAME
}

TEST(every_errno_is_named) {
  /* For each errno glibc knows, the name and text are glibc's; for a gap in
   * the numbering (41 and 58 on Linux) they are the unknown ones. Never
   * NULL either way. */
  int known = 0;
  for (int e = 1; e <= 133; e++) {
    const char *name = weft_err_name(-e);
    const char *desc = weft_strerror(-e);
    ASSERT_NOT_NULL(name);
    ASSERT_NOT_NULL(desc);
    const char *gname = strerrorname_np(e);
    if (gname) {
      known++;
      ASSERT_STR_EQ(name, gname);
      ASSERT_STR_EQ(desc, strerrordesc_np(e));
      ASSERT(strcmp(name, "UNKNOWN") != 0);
      ASSERT_EQ(name[0], 'E');
    } else {
      ASSERT_STR_EQ(name, "UNKNOWN");
      ASSERT_STR_EQ(desc, "unknown error");
    }
  }
  ASSERT_GE(known, 125); /* glibc names nearly all of 1..133 */
}

TEST(system_macros_are_negative_errno) {
  ASSERT_EQ(WEFT_EAGAIN, -EAGAIN);
  ASSERT_EQ(WEFT_EINVAL, -EINVAL);
  ASSERT_EQ(WEFT_ECANCELED, -ECANCELED);
  ASSERT_EQ(WEFT_EOWNERDEAD, -EOWNERDEAD);
  ASSERT_STR_EQ(weft_err_name(WEFT_EAGAIN), "EAGAIN");
  ASSERT_STR_EQ(weft_err_name(WEFT_EINVAL), "EINVAL");
  ASSERT_STR_EQ(weft_err_name(WEFT_EBUSY), "EBUSY");
  ASSERT_STR_EQ(weft_err_name(WEFT_ECANCELED), "ECANCELED");
  ASSERT_STR_EQ(weft_err_name(WEFT_ENOTRECOVERABLE), "ENOTRECOVERABLE");
  ASSERT_STR_EQ(weft_strerror(WEFT_ETIMEDOUT), "Connection timed out");
}

TEST(success_and_out_of_range_codes) {
  ASSERT_STR_EQ(weft_strerror(0), "success");
  ASSERT_STR_EQ(weft_err_name(0), "OK");
  /* Codes are negative: a positive errno is not a weft code. */
  ASSERT_STR_EQ(weft_err_name(EINVAL), "UNKNOWN");
  ASSERT_STR_EQ(weft_strerror(EINVAL), "unknown error");
  /* Between the errno range and weft's own. */
  ASSERT_STR_EQ(weft_err_name(-5000), "UNKNOWN");
  ASSERT_STR_EQ(weft_err_name(WEFT_ERRNO_BASE), "UNKNOWN");
  ASSERT_STR_EQ(weft_strerror(WEFT_ERRNO_BASE), "unknown error");
  ASSERT_STR_EQ(weft_err_name(INT32_MIN), "UNKNOWN");
  ASSERT_STR_EQ(weft_err_name(INT32_MAX), "UNKNOWN");
  ASSERT_STR_EQ(weft_strerror(INT32_MAX), "unknown error");
}

TEST(version) {
  char want[32];
  ASSERT_EQ(weft_version(), WEFT_VERSION_HEX);
  snprintf(want, sizeof want, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR,
           WEFT_VERSION_PATCH);
  ASSERT_STR_EQ(weft_version_string(), want);
  ASSERT_EQ(weft_version() >> 16, WEFT_VERSION_MAJOR);
}
