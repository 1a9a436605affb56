#pragma once
// One bound setting of settings.h: the field it writes, its bounds, and how a value is
// checked (from JSON), parsed (from --set text), written and read back. Private to
// settings.cpp; split out so that the table logic and the value logic each fit one screen.
// The functions are inline only because this header is the whole of this part.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace dsrt::config::detail {

using field_ptr = std::variant<std::int64_t*, int*, double*, bool*, std::chrono::milliseconds*,
                               std::string*>;
// A checked value waiting to be written. Integers of every width (and milliseconds) travel
// as int64, the type their bounds were checked in.
using value = std::variant<std::int64_t, double, bool, std::string>;

struct setting {
  std::string name;
  std::string unit;
  std::string doc;
  field_ptr field;
  std::int64_t int_min = 0, int_max = 0;  // integer and millisecond fields
  double real_min = 0, real_max = 0;      // double fields
  std::vector<std::string> allowed;       // string fields; empty: any text
  std::string default_text;               // the value at add(), for markdown_table
  std::string range_text;
};

// Values are cut in messages so that a stray blob cannot flood a log line.
inline constexpr std::size_t shown_bytes_max = 64;

inline std::string shown(std::string text) {
  if (text.size() > shown_bytes_max) text = text.substr(0, shown_bytes_max) + "...";
  return text;
}

inline bool is_integer(const field_ptr& f) {
  return std::holds_alternative<std::int64_t*>(f) || std::holds_alternative<int*>(f) ||
         std::holds_alternative<std::chrono::milliseconds*>(f);
}

inline std::string expected(const setting& s) {
  if (is_integer(s.field)) return fmt::format("an integer ({})", s.unit);
  if (std::holds_alternative<double*>(s.field)) return fmt::format("a number ({})", s.unit);
  if (std::holds_alternative<bool*>(s.field)) return "true or false";
  return "a string";
}

inline error wrong_type(const setting& s, std::string_view got) {
  return make_error(error_code::invalid_argument, "{}: expected {}, got {}", s.name, expected(s),
                    shown(std::string(got)));
}

inline error out_of_range(const setting& s, std::string_view got) {
  return make_error(error_code::invalid_argument, "{}: {} is out of range {} ({})", s.name,
                    shown(std::string(got)), s.range_text, s.unit);
}

// The JSON value as a checked value of the setting's type.
inline result<value> check(const setting& s, const nlohmann::json& j) {
  const auto got = [&] {  // "string \"4096\"", but "null" rather than "null null"
    return j.is_null() ? std::string("null") : fmt::format("{} {}", j.type_name(), j.dump());
  };
  if (is_integer(s.field)) {
    if (!j.is_number_integer()) return wrong_type(s, got());
    // Above int64 it is out of any range; checked first so get<int64_t> cannot wrap.
    if (j.is_number_unsigned() &&
        j.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
      return out_of_range(s, j.dump());
    }
    const auto v = j.get<std::int64_t>();
    if (v < s.int_min || v > s.int_max) return out_of_range(s, j.dump());
    return value{v};
  }
  if (std::holds_alternative<double*>(s.field)) {
    if (!j.is_number()) return wrong_type(s, got());
    const auto v = j.get<double>();
    // NaN compares false with both bounds, so finiteness is checked on its own.
    if (!std::isfinite(v) || v < s.real_min || v > s.real_max) {
      return out_of_range(s, fmt::format("{}", v));
    }
    return value{v};
  }
  if (std::holds_alternative<bool*>(s.field)) {
    if (!j.is_boolean()) return wrong_type(s, got());
    return value{j.get<bool>()};
  }
  if (!j.is_string()) return wrong_type(s, got());
  auto v = j.get<std::string>();
  if (!s.allowed.empty() && std::find(s.allowed.begin(), s.allowed.end(), v) == s.allowed.end()) {
    return make_error(error_code::invalid_argument, "{}: \"{}\" is not one of {}", s.name,
                      shown(v), s.range_text);
  }
  return value{std::move(v)};
}

// Command-line text as the JSON value a file would hold for the setting.
inline result<nlohmann::json> parse_text(const setting& s, std::string_view text) {
  const char* end = text.data() + text.size();
  if (is_integer(s.field)) {
    std::int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec == std::errc::result_out_of_range) return out_of_range(s, text);
    if (ec != std::errc() || ptr != end) return wrong_type(s, fmt::format("'{}'", text));
    return nlohmann::json(v);
  }
  if (std::holds_alternative<double*>(s.field)) {
    double v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec == std::errc::result_out_of_range) return out_of_range(s, text);
    if (ec != std::errc() || ptr != end) return wrong_type(s, fmt::format("'{}'", text));
    return nlohmann::json(v);
  }
  if (std::holds_alternative<bool*>(s.field)) {
    if (text == "true" || text == "false") return nlohmann::json(text == "true");
    return wrong_type(s, fmt::format("'{}'", text));
  }
  return nlohmann::json(std::string(text));
}

inline void write_field(const setting& s, const value& v) {
  std::visit(
      [&](auto* field) {
        using T = std::remove_pointer_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
          *field = std::chrono::milliseconds(std::get<std::int64_t>(v));
        } else if constexpr (std::is_same_v<T, int>) {
          *field = int(std::get<std::int64_t>(v));  // bounds are ints: it fits
        } else {
          *field = std::get<T>(v);
        }
      },
      s.field);
}

inline nlohmann::json current(const setting& s) {
  return std::visit(
      [](auto* field) {
        using T = std::remove_pointer_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
          return nlohmann::json(field->count());
        } else {
          return nlohmann::json(*field);
        }
      },
      s.field);
}

}  // namespace dsrt::config::detail
