/* Tests for error codes and names (src/common/error.c). */
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
