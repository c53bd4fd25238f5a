/*
 * Tests for the intrusive list (src/common/list.h): order of push_back and
 * push_front, pop_front, double removal, container_of, and removal while
 * iterating with for_each_safe. Each check walks the list both ways, so a
 * broken prev link shows as well as a broken next link.
 */
#include "common/list.h"
#include "weft_test.h"

struct item {
  int value;
  weft__list link; /* deliberately not the first member */
};

/* The values of h's elements, front to back, as digits ("" when empty);
 * also checks that walking back gives the same order reversed. */
static const char *contents(weft__list *h) {
  static char fwd[64];
  char back[64];
  size_t n = 0, m = 0;
  weft__list *pos;
  weft__list_for_each(pos, h) {
    ASSERT_LT(n, sizeof fwd - 1);
    fwd[n++] = (char)('0' + weft__container_of(pos, struct item, link)->value);
  }
  fwd[n] = 0;
  for (pos = h->prev; pos != h; pos = pos->prev) {
    ASSERT_LT(m, sizeof back - 1);
    back[m++] = (char)('0' + weft__container_of(pos, struct item, link)->value);
  }
  ASSERT_EQ(m, n);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(back[i], fwd[n - 1 - i]);
  return fwd;
}

TEST(empty_list) {
  weft__list h;
  weft__list_init(&h);
  ASSERT(weft__list_empty(&h));
  ASSERT_NULL(weft__list_pop_front(&h));
  ASSERT_STR_EQ(contents(&h), "");
}

TEST(push_back_and_front_order) {
  struct item it[5];
  weft__list h;
  weft__list_init(&h);
  for (int i = 0; i < 5; i++) it[i].value = i;
  weft__list_push_back(&h, &it[1].link);
  weft__list_push_back(&h, &it[2].link);
  weft__list_push_front(&h, &it[0].link);
  weft__list_push_back(&h, &it[3].link);
  weft__list_push_front(&h, &it[4].link);
  ASSERT(!weft__list_empty(&h));
  ASSERT_STR_EQ(contents(&h), "40123");
}

TEST(pop_front_is_fifo_with_push_back) {
  struct item it[4];
  weft__list h;
  weft__list_init(&h);
  for (int i = 0; i < 4; i++) {
    it[i].value = i;
    weft__list_push_back(&h, &it[i].link);
  }
  for (int i = 0; i < 4; i++) {
    weft__list *n = weft__list_pop_front(&h);
    ASSERT_NOT_NULL(n);
    struct item *got = weft__container_of(n, struct item, link);
    ASSERT_PTR_EQ(got, &it[i]);
    ASSERT(weft__list_empty(n)); /* a popped node is unlinked */
  }
  ASSERT(weft__list_empty(&h));
  ASSERT_NULL(weft__list_pop_front(&h));
}

TEST(remove_middle_ends_and_twice) {
  struct item it[4];
  weft__list h;
  weft__list_init(&h);
  for (int i = 0; i < 4; i++) {
    it[i].value = i;
    weft__list_push_back(&h, &it[i].link);
  }
  weft__list_remove(&it[1].link);
  ASSERT_STR_EQ(contents(&h), "023");
  weft__list_remove(&it[1].link); /* harmless: it is its own empty list */
  ASSERT_STR_EQ(contents(&h), "023");
  weft__list_remove(&it[0].link);
  weft__list_remove(&it[3].link);
  ASSERT_STR_EQ(contents(&h), "2");
  weft__list_remove(&it[2].link);
  ASSERT(weft__list_empty(&h));
  /* Removed nodes can go back in. */
  weft__list_push_back(&h, &it[3].link);
  weft__list_push_front(&h, &it[1].link);
  ASSERT_STR_EQ(contents(&h), "13");
}

TEST(for_each_safe_allows_removal) {
  struct item it[6];
  weft__list h, *pos, *tmp;
  weft__list_init(&h);
  for (int i = 0; i < 6; i++) {
    it[i].value = i;
    weft__list_push_back(&h, &it[i].link);
  }
  int visited = 0;
  weft__list_for_each_safe(pos, tmp, &h) {
    struct item *x = weft__container_of(pos, struct item, link);
    visited++;
    if (x->value % 2 == 0) weft__list_remove(pos);
  }
  ASSERT_EQ(visited, 6);
  ASSERT_STR_EQ(contents(&h), "135");
  weft__list_for_each_safe(pos, tmp, &h) weft__list_remove(pos);
  ASSERT(weft__list_empty(&h));
}

TEST(container_of_round_trip) {
  struct item x;
  ASSERT_PTR_EQ(weft__container_of(&x.link, struct item, link), &x);
}
