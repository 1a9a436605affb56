#pragma once
// Private to dsrt_wire (wire.cpp, wire_cluster.cpp): what every conversion shares — the
// frame-type check and kj::Exception guard around a decode, building a frame from a root,
// and bounded text in both directions.
#include <capnp/message.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstring>
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

// The first segment of a message that carries `values` 32-bit values (tokens) besides
// `structs` small structs: Cap'n Proto's default first segment is 1,024 words (8 KiB,
// allocated zeroed) whatever the message, a cost per message that dwarfs the few hundred
// bytes a chunk or a request holds. Too small a guess only adds a segment.
constexpr unsigned first_segment_words(std::size_t values, std::size_t structs = 1) {
  constexpr std::size_t words_per_struct = 16, values_per_word = 2;
  return unsigned(std::min<std::size_t>(words_per_struct * (structs + 1) + (values + 1) / values_per_word,
                                        capnp::SUGGESTED_FIRST_SEGMENT_WORDS));
}

// A first segment this small lives on the stack: a calloc'd one cost ~30 % of encoding a
// small frame (a Cancel, a heartbeat).
inline constexpr unsigned stack_segment_words_max = 64;

// The words a message of `Root` alone takes: exact for a root without pointers (the root
// pointer and the data section: a Cancel is 2 words), else first_segment_words' guess.
// Zeroing a 32-word guess for a 2-word Cancel was a tenth of encoding it.
template <class Root>
constexpr unsigned root_segment_words() {
  using layout = typename Root::_capnpPrivate;
  if constexpr (layout::pointerCount == 0) return 1 + layout::dataWordSize;
  return first_segment_words(0);
}

template <class Root, class Fill>
frame_bytes build(frame_type type, Fill&& fill, unsigned first_words = root_segment_words<Root>()) {
  if (first_words <= stack_segment_words_max) {
    capnp::word first[stack_segment_words_max];   // Cap'n Proto wants it zeroed
    std::memset(first, 0, first_words * sizeof(capnp::word));
    capnp::MallocMessageBuilder message(kj::arrayPtr(first, first_words), capnp::AllocationStrategy::GROW_HEURISTICALLY);
    fill(message.initRoot<Root>());
    return encode_frame(type, message);
  }
  capnp::MallocMessageBuilder message(first_words, capnp::AllocationStrategy::GROW_HEURISTICALLY);
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
