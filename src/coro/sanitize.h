/*
 * What the debugging tools need to hear about stack switches, in one place:
 * AddressSanitizer's fiber annotations, ThreadSanitizer's fiber API and
 * Valgrind's stack registration. Each hook compiles to nothing when its tool
 * is absent, so the hub calls them unconditionally.
 *
 *   ASan: __sanitizer_start_switch_fiber before every switch (with the
 *   target's stack bounds; a NULL fake-stack slot when the leaving coroutine
 *   is finished), __sanitizer_finish_switch_fiber right after it, on the
 *   resumed side. Without them ASan reports false stack-buffer errors and
 *   its fake stacks leak.
 *   TSan: one fiber per coroutine (__tsan_create_fiber), entered with
 *   __tsan_switch_to_fiber just before the switch, destroyed once the
 *   coroutine's stack is no longer in use.
 *   Valgrind: VALGRIND_STACK_REGISTER for every mmap'd stack, so memcheck
 *   does not take a switch for a huge stack-pointer move.
 */
#ifndef WEFT_CORO_SANITIZE_H
#define WEFT_CORO_SANITIZE_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif

#ifdef WEFT__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
static inline void weft__san_start_switch(void **fake_save, const void *bottom, size_t size) {
  __sanitizer_start_switch_fiber(fake_save, bottom, size);
}
static inline void weft__san_finish_switch(void *fake_save) {
  __sanitizer_finish_switch_fiber(fake_save, NULL, NULL);
}
#else
static inline void weft__san_start_switch(void **fake_save, const void *bottom, size_t size) {
  (void)fake_save, (void)bottom, (void)size;
}
static inline void weft__san_finish_switch(void *fake_save) { (void)fake_save; }
#endif

#ifdef WEFT__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_set_fiber_name(void *fiber, const char *name);
static inline void *weft__tsan_current(void) { return __tsan_get_current_fiber(); }
static inline void *weft__tsan_create(const char *name) {
  void *f = __tsan_create_fiber(0);
  __tsan_set_fiber_name(f, name);
  return f;
}
static inline void weft__tsan_destroy(void *f) {
  if (f) __tsan_destroy_fiber(f);
}
static inline void weft__tsan_switch(void *f) { __tsan_switch_to_fiber(f, 0); }
#else
static inline void *weft__tsan_current(void) { return NULL; }
static inline void *weft__tsan_create(const char *name) { (void)name; return NULL; }
static inline void weft__tsan_destroy(void *f) { (void)f; }
static inline void weft__tsan_switch(void *f) { (void)f; }
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT__VALGRIND 1
#endif
#endif
#ifdef WEFT__VALGRIND
static inline unsigned weft__vg_stack_register(void *lo, void *hi) {
  return VALGRIND_STACK_REGISTER(lo, hi);
}
static inline void weft__vg_stack_deregister(unsigned id) { VALGRIND_STACK_DEREGISTER(id); }
#else
static inline unsigned weft__vg_stack_register(void *lo, void *hi) {
  (void)lo, (void)hi;
  return 0;
}
static inline void weft__vg_stack_deregister(unsigned id) { (void)id; }
#endif

#endif
