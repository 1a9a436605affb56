#pragma once
// DSRT_ASSERT: a broken invariant is a programmer error. It crashes loudly with the
// values printed; it is never used for bad input (that travels as a dsrt::error value).
//
//   DSRT_ASSERT(used <= capacity, "used={} capacity={}", used, capacity);
#include <fmt/format.h>

#include <string>

namespace dsrt::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line,
                              const std::string& message);

inline std::string assert_message() { return {}; }
template <class... Args>
std::string assert_message(fmt::format_string<Args...> f, Args&&... args) {
  return fmt::format(f, std::forward<Args>(args)...);
}
}  // namespace dsrt::detail

#define DSRT_ASSERT(cond, ...)                                                     \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      ::dsrt::detail::assert_fail(#cond, __FILE__, __LINE__,                       \
                                  ::dsrt::detail::assert_message(__VA_ARGS__));    \
  } while (0)
