// Parity with @lenml/tokenizers (an independent JavaScript implementation of Hugging Face
// tokenizers) over deterministic, seeded strings: identical ids and identical decoded
// text. The strings cover English, Chinese/Japanese, code, emoji with ZWJ sequences,
// whitespace runs, long numbers, inline special tokens, mixed scripts and invalid UTF-8.
#include <gtest/gtest.h>

#include <random>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"
#include "tests/tokenizer/test_support.h"

namespace dsrt::tokenizer {
namespace {

using nlohmann::json;

class string_generator {
 public:
  explicit string_generator(std::uint32_t seed) : rng_(seed) {}

  std::string next() {
    std::string s;
    const int parts = pick(1, 6);
    for (int i = 0; i < parts; ++i) s += part();
    return s;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <class T, std::size_t N>
  const T& any(const T (&items)[N]) { return items[static_cast<std::size_t>(pick(0, int(N) - 1))]; }
  std::string cp(char32_t c) {
    std::string out;
    unicode::append_utf8(out, c);
    return out;
  }
  std::string range(char32_t lo, char32_t hi, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += cp(lo + static_cast<char32_t>(pick(0, int(hi - lo))));
    return out;
  }

  std::string part() {
    static const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
                                  "Hello", "world", "don't", "it's", "we'll", "I'M", "THEY'RE",
                                  "tokenizer", "DeepSeek", "naïve", "café", "résumé", "co-op",
                                  "e.g.", "U.S.A.", "state-of-the-art", "you've", "she'd"};
    static const char* code[] = {"int main() { return 0; }\n", "for (i = 0; i < n; ++i) {\n\tx[i] *= 2;\n}",
                                 "def f(x):\n    return x**2  # square\n", "a->b = c[d] << 3;",
                                 "SELECT * FROM t WHERE id = 42;", "<div class=\"x\">&nbsp;</div>",
                                 "#include <vector>\n", "x = {'k': [1, 2, 3]}", "fn main() -> i32 {}",
                                 "    if (a && !b || c) {}\r\n", "$var = @arr[0] % 7 ^ ~1;"};
    static const char* emoji[] = {"😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🧑🏿‍💻", "🐈‍⬛",
                                  "✋🏻", "🤷‍♀️", "👩‍❤️‍💋‍👨", "1️⃣", "🫠", "©", "™"};
    static const char* specials[] = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                     "<｜▁pad▁｜>", "<｜place▁holder▁no▁7｜>", "<｜User｜>",
                                     "<｜Assistant｜>", "<think>", "</think>", "<｜begin",
                                     "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>",
                                     "<|im_end|>", "<|start_header_id|>"};
    static const char* whitespace[] = {" ", "\t", "\n", "\r\n", "\u00A0", "\u3000", "\u2003",
                                       "\u2028", "\v", "\f"};
    static const char* invalid[] = {"\xFF", "\xC0\xAF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                    "\xE4\xBD", "\xF0\x9F\x98", "\x80\x80", "\xC3", "\xFE\xFE\xFF",
                                    "\xE2\x82"};
    switch (pick(0, 13)) {
      case 0: {
        std::string s;
        for (int i = 0, n = pick(1, 12); i < n; ++i) s += std::string(i ? " " : "") + any(words);
        return s + any({".", ",", "!", "?", "", " ", ";", ":"});
      }
      case 1: return range(0x4E00, 0x9FA5, pick(1, 12)) + any({"，", "。", "！", "", "、"});
      case 2: return range(0x3040, 0x30FF, pick(1, 8));
      case 3: return any(code);
      case 4: {
        std::string s;
        for (int i = 0, n = pick(1, 5); i < n; ++i) s += std::string(any(emoji)) + (pick(0, 2) ? "" : " ");
        return s;
      }
      case 5: {
        std::string s;
        for (int i = 0, n = pick(1, 40); i < n; ++i) s += any(whitespace);
        if (pick(0, 1)) s = std::string(static_cast<std::size_t>(pick(1, 300)), ' ');
        return s;
      }
      case 6: {
        std::string s = pick(0, 1) ? " " : "";
        for (int i = 0, n = pick(1, 40); i < n; ++i) s += static_cast<char>('0' + pick(0, 9));
        return s + any({"", ".5", ",000", "%", "th", "١٢٣", "²"});
      }
      case 7: return any(specials);
      case 8:  // mixed scripts: Cyrillic, Greek, Arabic, Devanagari (with marks), Hangul
        return range(0x0410, 0x044F, pick(1, 6)) + " " + range(0x03B1, 0x03C9, pick(1, 4)) +
               range(0x0627, 0x064A, pick(0, 5)) + range(0x0915, 0x0939, 2) + "\u093F\u0902" +
               range(0xAC00, 0xD7A3, pick(0, 4));
      case 9: return any(invalid);
      case 10: {  // random code points; U+0085 and U+FEFF excluded (see docs/TOKENIZER.md)
        std::string s;
        for (int i = 0, n = pick(1, 8); i < n; ++i) {
          char32_t c = static_cast<char32_t>(pick(0, 3) ? pick(0x20, 0x2FFF) : pick(0x10000, 0x1FAFF));
          if (c == 0x85 || c == 0xFEFF || (c >= 0xD800 && c <= 0xDFFF)) c = U'x';
          s += cp(c);
        }
        return s;
      }
      case 11: return any({"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re"});
      case 12: return any({"e\u0301", "a\u0308\u0304", "\u1100\u1161", "\u212B", "o\u0328\u0301",
                           "\u0041\u030A", "\u00C5", "\u1E9B\u0323"});
      default: return any({"https://example.com/a?b=c&d=e", "user@example.org", "!!!", "...",
                           "--", "((x))", "\"quoted\"", "'single'", "¿Qué?", "[[1]]", "$$$"});
    }
  }

  std::mt19937 rng_;
};

struct parity_report {
  int compared = 0;
  int mismatches = 0;
  std::string first_failures;
};

// Encodes every string with both implementations and compares ids and decoded text.
parity_report compare_with_reference(const std::string& model_arg, const std::filesystem::path& dir,
                                     const tokenizer& tok, const std::vector<std::string>& strings) {
  parity_report report;
  const auto in = dir / "parity_in.jsonl";
  const auto out = dir / "parity_out.jsonl";
  std::string lines;
  for (const auto& s : strings) lines += json{{"b64", test::base64(s)}}.dump() + "\n";
  test::write_file(in, lines);
  const std::string problem = test::run_reference("encode", model_arg, in, out);
  if (!problem.empty()) {
    ADD_FAILURE() << problem;
    return report;
  }
  std::istringstream results(test::read_file(out));
  std::string line;
  for (const auto& s : strings) {
    if (!std::getline(results, line)) {
      ADD_FAILURE() << "reference output ended early after " << report.compared << " strings";
      break;
    }
    const json expected = json::parse(line);
    const auto ids = tok.encode(s, /*add_special=*/false);
    const auto expected_ids = expected.at("ids").get<std::vector<std::int32_t>>();
    const std::string text = tok.decode(ids);
    ++report.compared;
    if (ids != expected_ids || text != expected.at("text").get<std::string>()) {
      if (++report.mismatches <= 5) {
        report.first_failures += "\n  input " + json(test::base64(s)).dump() + " (base64)\n    ours: " +
                                 json(ids).dump() + " text " + json(unicode::encode_utf8(unicode::decode_utf8(text))).dump() +
                                 "\n    reference: " + expected.at("ids").dump() + " text " +
                                 expected.at("text").dump();
      }
    }
  }
  return report;
}

TEST(TokenizerParity, DeepSeekV3MatchesReferenceOnGeneratedStrings) {
  auto tok = tokenizer::load(test::deepseek_dir());
  ASSERT_TRUE(tok.ok()) << tok.err().to_string();
  string_generator gen(20240607);
  std::vector<std::string> strings;
  for (int i = 0; i < 2400; ++i) strings.push_back(gen.next());
  // A few long ones: a whole paragraph mix and a long whitespace run.
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += gen.next();
  strings.push_back(long_text);
  strings.push_back(std::string(5000, ' ') + "x" + std::string(3000, '\n'));
  const auto report = compare_with_reference("deepseek_v3", test::fresh_dir("parity_deepseek"), *tok, strings);
  EXPECT_EQ(report.compared, static_cast<int>(strings.size()));
  EXPECT_EQ(report.mismatches, 0) << report.mismatches << " of " << report.compared
                                  << " strings differ; first ones:" << report.first_failures;
  std::printf("[ parity ] DeepSeek-V3: %d strings compared, %d mismatches\n", report.compared,
              report.mismatches);
}

// The standard byte-level pre-tokenizers on a tiny dsgen-like vocabulary: GPT-2's
// ByteLevel regex, Llama-3's Split pattern (with (?i:...)), and Qwen2's NFC + Split.
TEST(TokenizerParity, TinyTokenizerPreTokenizersMatchReference) {
  const json byte_level_no_regex = {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                    {"trim_offsets", true}, {"use_regex", false}};
  const auto split = [&](const char* pattern) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}},
                               {"behavior", "Isolated"}, {"invert", false}},
                              byte_level_no_regex})}};
  };
  const char* llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const char* qwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  struct variant {
    const char* name;
    json pre_tokenizer;
    json normalizer;
  };
  const std::vector<variant> variants = {
      {"gpt2_byte_level", nullptr, nullptr},
      {"gpt2_prefix_space", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}, nullptr},
      {"llama3_split", split(llama3), nullptr},
      {"qwen2_nfc_split", split(qwen2), {{"type", "NFC"}}}};
  const json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                       {"clean_up_tokenization_spaces", false},
                       {"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}};
  for (const auto& v : variants) {
    const auto dir = test::fresh_dir(std::string("parity_") + v.name);
    test::write_tiny_tokenizer(dir, config, v.pre_tokenizer, v.normalizer);
    auto tok = tokenizer::load(dir);
    ASSERT_TRUE(tok.ok()) << v.name << ": " << tok.err().to_string();
    string_generator gen(7 + static_cast<std::uint32_t>(v.pre_tokenizer.dump().size()));
    std::vector<std::string> strings;
    for (int i = 0; i < 400; ++i) strings.push_back(gen.next());
    const auto report = compare_with_reference(dir.string(), dir, *tok, strings);
    EXPECT_EQ(report.compared, static_cast<int>(strings.size())) << v.name;
    EXPECT_EQ(report.mismatches, 0) << v.name << ": " << report.mismatches << " of "
                                    << report.compared << " differ; first ones:" << report.first_failures;
  }
}

}  // namespace
}  // namespace dsrt::tokenizer
