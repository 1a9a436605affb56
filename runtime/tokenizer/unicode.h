#pragma once
// Unicode helpers for the tokenizer: UTF-8 decoding with the WHATWG replacement rules
// (what JavaScript's TextDecoder and the reference tokenizer do), general categories,
// White_Space and NFC. Private to runtime/tokenizer.
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::tokenizer::unicode {

// Unicode general categories, in the order of the generated tables.
enum class general_category : std::uint8_t {
  Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No,
  Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So,
  Zs, Zl, Zp, Cc, Cf, Cs, Co, Cn,
};
using category_mask = std::uint32_t;
constexpr category_mask mask_of(general_category c) {
  return category_mask{1} << static_cast<int>(c);
}

general_category category(char32_t cp);
bool is_white_space(char32_t cp);  // the Unicode White_Space property

// Mask of a property name as written in \p{...}: "L", "Lu", "Letter", "N", "P", "S", ...
// Returns 0 for a name we do not know.
category_mask category_mask_from_name(std::string_view name);

constexpr char32_t replacement_character = 0xFFFD;

// Decodes UTF-8, replacing each maximal invalid subsequence by U+FFFD exactly as the
// WHATWG Encoding standard (TextDecoder with fatal=false) does.
std::u32string decode_utf8(std::string_view bytes);
// The same, incrementally: feed appends the characters completed by `bytes`; finish
// appends U+FFFD if a character is incomplete and resets the state.
void utf8_feed(utf8_state& state, std::string_view bytes, std::u32string& out);
void utf8_finish(utf8_state& state, std::u32string& out);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

// Canonical composition (NFC). Input must be valid code points.
std::u32string nfc(std::u32string_view text);

}  // namespace dsrt::tokenizer::unicode
