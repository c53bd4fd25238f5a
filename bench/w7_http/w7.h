/*
 * bench/w7_http/w7.h: what every C server of W7 shares, so that they do the
 * very same work per request.
 *
 * The response is a complete HTTP/1.1 keep-alive answer with a 13-byte
 * body. A request ends at its blank line ("\r\n\r\n"; wrk sends GETs with
 * no body); w7_scan counts the request ends in what was just read,
 * carrying the match state across reads, and the server then writes that
 * many responses in one call.
 */
#ifndef W7_H
#define W7_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char w7_response[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
#define W7_RESPONSE_LEN (sizeof w7_response - 1)

/* Requests completed in buf[0..n), given the state left by the previous
 * read (0-3: how much of "\r\n\r\n" was matched); updates *state. */
static inline size_t w7_scan(const char *buf, size_t n, int *state) {
  static const char end[4] = {'\r', '\n', '\r', '\n'};
  size_t count = 0;
  int s = *state;
  for (size_t i = 0; i < n; i++) {
    char c = buf[i];
    if (c == end[s]) {
      if (++s == 4) {
        count++;
        s = 0;
      }
    } else {
      s = c == '\r' ? 1 : 0;
    }
  }
  *state = s;
  return count;
}

/* A buffer holding k responses back to back (grown as needed). */
typedef struct w7_out {
  char *buf;
  size_t cap; /* responses it holds */
} w7_out;

static inline const char *w7_responses(w7_out *o, size_t k) {
  if (k > o->cap) {
    size_t cap = o->cap ? o->cap : 16;
    while (cap < k) cap *= 2;
    char *b = realloc(o->buf, cap * W7_RESPONSE_LEN);
    if (!b) abort();
    for (size_t i = o->cap; i < cap; i++) memcpy(b + i * W7_RESPONSE_LEN, w7_response, W7_RESPONSE_LEN);
    o->buf = b;
    o->cap = cap;
  }
  return o->buf;
}

#endif
