// The tokenizer's Unicode helpers and regex matcher on known cases.
#include <gtest/gtest.h>

#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {
namespace {

using unicode::general_category;

TEST(Unicode, DecodesUtf8WithWhatwgReplacement) {
  // One U+FFFD per maximal invalid subpart, as TextDecoder does.
  EXPECT_EQ(unicode::decode_utf8("a\xF0\x9F\x98" "b"), U"a\uFFFDb");
  EXPECT_EQ(unicode::decode_utf8("\xC0\xAF"), U"\uFFFD\uFFFD");
  EXPECT_EQ(unicode::decode_utf8("\xED\xA0\x80"), U"\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(unicode::decode_utf8("\xF4\x90\x80\x80"), U"\uFFFD\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(unicode::decode_utf8("\xE2\x82\xAC\xE2\x82"), U"\u20AC\uFFFD");
  EXPECT_EQ(unicode::decode_utf8("\xF0\x9F\x98\x80"), U"\U0001F600");
}

TEST(Unicode, CategoriesAndWhiteSpace) {
  EXPECT_EQ(unicode::category(U'a'), general_category::Ll);
  EXPECT_EQ(unicode::category(U'中'), general_category::Lo);
  EXPECT_EQ(unicode::category(U'5'), general_category::Nd);
  EXPECT_EQ(unicode::category(0x0301), general_category::Mn);
  EXPECT_EQ(unicode::category(U'!'), general_category::Po);
  EXPECT_EQ(unicode::category(0x1F600), general_category::So);
  EXPECT_EQ(unicode::category(0x10FFFF), general_category::Cn);
  EXPECT_TRUE(unicode::is_white_space(0x3000));
  EXPECT_TRUE(unicode::is_white_space(0x85));
  EXPECT_FALSE(unicode::is_white_space(0xFEFF));
  EXPECT_EQ(unicode::category_mask_from_name("Nope"), 0u);
}

TEST(Unicode, Nfc) {
  EXPECT_EQ(unicode::nfc(U"e\u0301"), U"\u00E9");
  EXPECT_EQ(unicode::nfc(U"\u212B"), U"\u00C5");  // singleton decomposition
  EXPECT_EQ(unicode::nfc(U"\u1100\u1161\u11A8"), U"\uAC01");  // Hangul
  EXPECT_EQ(unicode::nfc(U"a\u0323\u0302"), U"\u1EAD");
  EXPECT_EQ(unicode::nfc(U"a\u0302\u0323"), U"\u1EAD");  // reordered by combining class
  EXPECT_EQ(unicode::nfc(U"plain"), U"plain");
}

std::vector<std::u32string> find_all(const regex& r, std::u32string_view text) {
  std::vector<std::u32string> out;
  std::size_t from = 0;
  while (auto m = r.find(text, from)) {
    out.emplace_back(text.substr(m->begin, m->end - m->begin));
    from = m->end > m->begin ? m->end : m->begin + 1;
  }
  return out;
}

TEST(Regex, Gpt2PatternSplitsLikePcre) {
  auto r = regex::compile(U"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
  ASSERT_TRUE(r.ok()) << r.err().to_string();
  EXPECT_EQ(find_all(*r, U"Hello world's 123  !!x\n"),
            (std::vector<std::u32string>{U"Hello", U" world", U"'s", U" 123", U" ", U" !!", U"x", U"\n"}));
}

TEST(Regex, CaseInsensitiveGroupsCountsAndClasses) {
  auto r = regex::compile(U"(?i:'s|'ll)|\\p{N}{1,3}|[\\u4e00-\\u9fa5]+|[^\\r\\n\\p{L}]?x");
  ASSERT_TRUE(r.ok()) << r.err().to_string();
  EXPECT_EQ(find_all(*r, U"'S'Ll12345中文-x"),
            (std::vector<std::u32string>{U"'S", U"'Ll", U"123", U"45", U"中文", U"-x"}));
}

TEST(Regex, RejectsWhatItDoesNotImplement) {
  for (const char32_t* bad : {U"a*?", U"^a", U"(a)+", U"\\d", U"[a", U"(?<n>a)", U"\\p{Foo}"}) {
    auto r = regex::compile(bad);
    ASSERT_FALSE(r.ok()) << unicode::encode_utf8(bad);
    EXPECT_EQ(r.err().code, error_code::unsupported);
  }
}

}  // namespace
}  // namespace dsrt::tokenizer
