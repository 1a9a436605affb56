#include "runtime/error.h"

#include <gtest/gtest.h>

namespace dsrt {
namespace {

result<int> parse_positive(int v) {
  if (v <= 0) return make_error(error_code::invalid_argument, "value {} is not positive", v);
  return v;
}

status twice_positive(int v) {
  DSRT_TRY(parse_positive(v));
  DSRT_TRY(parse_positive(v - 1));
  return ok_status();
}

TEST(Result, CarriesValueOrError) {
  auto good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.err().code, error_code::invalid_argument);
  EXPECT_EQ(bad.err().to_string(), "INVALID_ARGUMENT: value -1 is not positive");
}

TEST(Result, TryPropagatesTheFirstError) {
  EXPECT_TRUE(twice_positive(5).ok());
  auto s = twice_positive(1);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err().message, "value 0 is not positive");
}

TEST(Result, HttpStatusOfContractCodes) {
  EXPECT_EQ(to_http_status(error_code::invalid_argument), 400);
  EXPECT_EQ(to_http_status(error_code::overloaded), 429);
  EXPECT_EQ(to_http_status(error_code::unavailable), 503);
  EXPECT_EQ(to_http_status(error_code::deadline_exceeded), 504);
}

TEST(ResultDeathTest, ValueOfErrorIsAProgrammerError) {
  auto bad = parse_positive(0);
  EXPECT_DEATH((void)bad.value(), "value\\(\\) on an error result");
}

}  // namespace
}  // namespace dsrt
