#pragma once
// Bad input and operating faults are values, not exceptions or crashes: every fallible
// call returns dsrt::result<T>, which holds either a T or a dsrt::error (code + message).
// The codes are the request contract's codes (ARCHITECTURE.md) plus a few for local
// resources; to_http_status maps them for the gateway.
#include <fmt/format.h>

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "kernels/assert.h"

namespace dsrt {

enum class error_code {
  invalid_argument,   // 400: the caller's input is wrong
  unauthenticated,    // 401
  overloaded,         // 429, with retry-after
  unavailable,        // 503, with retry-after
  deadline_exceeded,  // 504
  cancelled,
  internal,           // a fault of ours
  not_found,          // a file or object that should exist does not
  corrupt_data,       // a file exists but its contents are malformed or inconsistent
  unsupported,        // well-formed, but a feature we do not implement
};

std::string_view error_code_name(error_code code);
int to_http_status(error_code code);

struct error {
  error_code code;
  std::string message;

  std::string to_string() const;
};

template <class... Args>
error make_error(error_code code, fmt::format_string<Args...> f, Args&&... args) {
  return error{code, fmt::format(f, std::forward<Args>(args)...)};
}

// Either a value or an error. REQUIRES: value() only when ok(), err() only when !ok().
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::move(value)) {}       // NOLINT: implicit by design
  result(error e) : state_(std::move(e)) {}           // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    DSRT_ASSERT(ok(), "value() on an error result: {}", std::get<1>(state_).to_string());
    return std::get<0>(state_);
  }
  const T& value() const& {
    DSRT_ASSERT(ok(), "value() on an error result: {}", std::get<1>(state_).to_string());
    return std::get<0>(state_);
  }
  T&& value() && {
    DSRT_ASSERT(ok(), "value() on an error result: {}", std::get<1>(state_).to_string());
    return std::get<0>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const error& err() const {
    DSRT_ASSERT(!ok(), "err() on a result that holds a value");
    return std::get<1>(state_);
  }

 private:
  std::variant<T, error> state_;
};

// A fallible call without a value.
struct ok_t {};
using status = result<ok_t>;
inline status ok_status() { return ok_t{}; }

}  // namespace dsrt

// Returns the error of a failed result from the enclosing function.
#define DSRT_TRY(expr)                                 \
  do {                                                 \
    auto&& dsrt_try_result_ = (expr);                  \
    if (!dsrt_try_result_.ok()) return dsrt_try_result_.err(); \
  } while (0)
