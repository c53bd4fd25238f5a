/*
 * Intrusive circular doubly linked lists. A weft__list is both the head of a
 * list and the link embedded in each element; weft__container_of gets from
 * the link back to the element. No allocation, O(1) insert and remove.
 */
#ifndef WEFT_COMMON_LIST_H
#define WEFT_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct weft__list {
  struct weft__list *next, *prev;
} weft__list;

#define weft__container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void weft__list_init(weft__list *h) { h->next = h->prev = h; }
static inline bool weft__list_empty(const weft__list *h) { return h->next == h; }

static inline void weft__list_insert_between(weft__list *n, weft__list *prev,
                                             weft__list *next) {
  n->prev = prev;
  n->next = next;
  prev->next = n;
  next->prev = n;
}
/* Add n at the tail / head of h. */
static inline void weft__list_push_back(weft__list *h, weft__list *n) {
  weft__list_insert_between(n, h->prev, h);
}
static inline void weft__list_push_front(weft__list *h, weft__list *n) {
  weft__list_insert_between(n, h, h->next);
}
/* Unlink n; n becomes an empty list so removing it twice is harmless. */
static inline void weft__list_remove(weft__list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  weft__list_init(n);
}
/* Unlink and return the first element, or NULL if h is empty. */
static inline weft__list *weft__list_pop_front(weft__list *h) {
  if (weft__list_empty(h)) return NULL;
  weft__list *n = h->next;
  weft__list_remove(n);
  return n;
}

#define weft__list_for_each(pos, head) \
  for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define weft__list_for_each_safe(pos, tmp, head) \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
       (pos) = (tmp), (tmp) = (pos)->next)

#endif
