#pragma once
// Private to dsrt_wire (wire.cpp, wire_cluster.cpp): what every conversion shares — the
// frame-type check and kj::Exception guard around a decode, building a frame from a root,
// and bounded text in both directions.
#include <capnp/message.h>
#include <kj/exception.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>

#include "transport/frame.h"

namespace dsrt::transport::detail {

inline error out_of_range(const char* field, std::string_view why) {
  return make_error(error_code::invalid_argument, "wire field {}: {}", field, why);
}

// Checks the frame type, then runs `body`, turning Cap'n Proto's lazy pointer checks into
// corrupt_data.
template <class T, class Body>
result<T> guarded(decoded_frame& frame, std::initializer_list<frame_type> expected, Body&& body) {
  if (std::find(expected.begin(), expected.end(), frame.type()) == expected.end())
    return make_error(error_code::invalid_argument, "expected a {} frame, got a {} frame",
                      frame_type_name(*expected.begin()), frame_type_name(frame.type()));
  try {
    return body();
  } catch (const kj::Exception& e) {
    return make_error(error_code::corrupt_data, "malformed {} frame: {}", frame_type_name(frame.type()),
                      e.getDescription().cStr());
  }
}

template <class Root, class Fill>
frame_bytes build(frame_type type, Fill&& fill) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<Root>());
  return encode_frame(type, message);
}

// `text` cut to at most `max` bytes, never inside a UTF-8 character.
inline std::string_view cut_utf8(std::string_view text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// Cap'n Proto wants NUL-terminated text; a std::string always is.
inline capnp::Text::Reader as_text(const std::string& s) { return capnp::Text::Reader(s.c_str(), s.size()); }

inline result<std::string> read_text(capnp::Text::Reader text, std::size_t max, const char* field) {
  if (text.size() > max)
    return out_of_range(field, fmt::format("{} bytes, at most {}", text.size(), max));
  return std::string(text.cStr(), text.size());
}

}  // namespace dsrt::transport::detail
