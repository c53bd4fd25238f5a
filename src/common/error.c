/*
 * Error names and descriptions. System codes are -errno and are named by
 * glibc (strerrorname_np / strerrordesc_np, both thread-safe and static);
 * weft's own codes are listed here.
 */
#define _GNU_SOURCE
#include <string.h>

#include "weft/common.h"

#define WEFT_OWN_ERRORS(X)                                               \
  X(WEFT_ESHUTDOWN, "object has been shut down")                         \
  X(WEFT_EBROKEN, "executor or barrier is broken")                       \
  X(WEFT_EWORKERDIED, "worker died while running the task")              \
  X(WEFT_ETASKFAILED, "task failed")                                     \
  X(WEFT_EPEERDIED, "peer process died")                                 \
  X(WEFT_ENOTASK, "no task registered under that name")                  \
  X(WEFT_EFULL, "queue is full")                                         \
  X(WEFT_EEMPTY, "queue is empty")                                       \
  X(WEFT_ECORRUPT, "shared data failed a consistency check")

const char *weft_strerror(int err) {
  switch (err) {
#define X(code, text) case code: return text;
    WEFT_OWN_ERRORS(X)
#undef X
  case 0:
    return "success";
  default:
    break;
  }
  if (err < 0 && err > WEFT_ERRNO_BASE) {
    const char *d = strerrordesc_np(-err);
    if (d) return d;
  }
  return "unknown error";
}

const char *weft_err_name(int err) {
  switch (err) {
#define X(code, text) case code: return #code;
    WEFT_OWN_ERRORS(X)
#undef X
  case 0:
    return "OK";
  default:
    break;
  }
  if (err < 0 && err > WEFT_ERRNO_BASE) {
    const char *n = strerrorname_np(-err);
    if (n) return n;
  }
  return "UNKNOWN";
}

unsigned weft_version(void) { return WEFT_VERSION_HEX; }

#define WEFT_STR_(x) #x
#define WEFT_STR(x) WEFT_STR_(x)
const char *weft_version_string(void) {
  return WEFT_STR(WEFT_VERSION_MAJOR) "." WEFT_STR(WEFT_VERSION_MINOR) "." WEFT_STR(
      WEFT_VERSION_PATCH);
}
