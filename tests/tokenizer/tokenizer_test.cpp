// Behaviour of the tokenizer API: special tokens, decode, streaming, errors, and a tiny
// dsgen-style tokenizer.json.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"
#include "tests/tokenizer/test_support.h"

namespace dsrt::tokenizer {
namespace {

using nlohmann::json;

const tokenizer& deepseek() {
  static const auto tok = [] {
    auto t = tokenizer::load(test::deepseek_dir());
    if (!t.ok()) {
      ADD_FAILURE() << t.err().to_string();
      std::abort();
    }
    return std::move(t).value();
  }();
  return tok;
}

const std::string bos = "<｜begin▁of▁sentence｜>";
const std::string eos = "<｜end▁of▁sentence｜>";

TEST(Tokenizer, DeepSeekSpecialTokens) {
  const auto& t = deepseek();
  EXPECT_EQ(t.bos_id(), 0);
  ASSERT_FALSE(t.eos_ids().empty());
  EXPECT_EQ(t.eos_ids()[0], 1);
  EXPECT_EQ(t.token_id(eos), 1);
  EXPECT_EQ(t.token_id("no such token"), std::nullopt);
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(100));
  EXPECT_EQ(t.vocab_size(), 128815);  // the highest added token is 128814
  // add_bos_token is true in tokenizer_config.json (LlamaTokenizerFast): BOS first.
  const auto with = t.encode("Hello world", true);
  const auto without = t.encode("Hello world", false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], 0);
  EXPECT_EQ(std::vector<std::int32_t>(with.begin() + 1, with.end()), without);
  EXPECT_EQ(without, (std::vector<std::int32_t>{19923, 2058}));
}

TEST(Tokenizer, DecodeSkipsSpecialTokensOnRequest) {
  const auto& t = deepseek();
  const auto ids = t.encode(bos + "Hi there" + eos, false);
  EXPECT_EQ(t.decode(ids), bos + "Hi there" + eos);
  EXPECT_EQ(t.decode(ids, /*skip_special=*/true), "Hi there");
  const std::int32_t bad[] = {-5, 19923, 1 << 30};
  EXPECT_EQ(t.decode(bad), "Hello");  // unknown ids contribute nothing
}

TEST(Tokenizer, InvalidUtf8IsReplacedBeforeTokenizing) {
  const auto& t = deepseek();
  const auto ids = t.encode("a\xFF" "b\xE4\xBD", false);
  EXPECT_EQ(ids, t.encode("a\uFFFDb\uFFFD", false));
  EXPECT_EQ(t.decode(ids), "a\uFFFDb\uFFFD");
}

// Whether a chunk ends in the middle of a UTF-8 character.
bool ends_inside_character(const std::string& chunk) {
  std::size_t i = chunk.size();
  int continuation = 0;
  while (i > 0 && (static_cast<unsigned char>(chunk[i - 1]) & 0xC0) == 0x80) --i, ++continuation;
  if (i == 0) return continuation > 0;
  const unsigned lead = static_cast<unsigned char>(chunk[i - 1]);
  const int length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return continuation + 1 < length;
}

TEST(StreamDecoder, ChunksNeverSplitCharactersAndConcatenateToDecode) {
  const auto& t = deepseek();
  const std::vector<std::string> texts = {
      "Hello, world!", "你好，世界！这是一个测试。", "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 🇯🇵",
      "mixed 日本語 and English 한국어 Ελληνικά", "emoji burst 😀😃😄😁😆😅🤣😂", "a\xFF\xFE" "b",
      bos + "special 🐈‍⬛" + eos + "after", "tail cut \xF0\x9F\x98"};
  std::mt19937 rng(11);
  std::vector<std::string> all = texts;
  for (int i = 0; i < 200; ++i) {  // random CJK / emoji / ASCII mixes
    std::string s;
    for (int k = 0; k < 12; ++k) {
      const int kind = static_cast<int>(rng() % 3);
      const char32_t c = kind == 0 ? 0x4E00 + rng() % 0x5000 : kind == 1 ? 0x1F300 + rng() % 0x300 : 0x20 + rng() % 0x5F;
      unicode::append_utf8(s, c);
    }
    all.push_back(s);
  }
  for (const auto& text : all) {
    for (bool skip : {false, true}) {
      const auto ids = t.encode(text, true);
      stream_decoder stream(t, skip);
      std::string joined;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::string chunk = stream.push(ids[i]);
        EXPECT_FALSE(ends_inside_character(chunk)) << "chunk after id #" << i << " of " << text;
        joined += chunk;
      }
      joined += stream.flush();
      EXPECT_EQ(joined, t.decode(ids, skip)) << text;
    }
  }
}

// About 1 MB of English prose: round-trips exactly. Prints the time taken (a test never
// asserts speed; this is here so a slowdown is visible in the log).
TEST(Tokenizer, EncodesAMegabyteOfText) {
  const auto& t = deepseek();
  const std::string paragraph =
      "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
      "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity. "
      "In 1859 Charles Dickens published 45 chapters; readers paid $0.01 per page!\n\n";
  std::string text;
  for (int i = 0; text.size() < (1u << 20); ++i) text += paragraph + std::to_string(i) + " ";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = t.encode(text, false);
  const auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
  EXPECT_EQ(t.decode(ids), text);
  std::printf("[ timing ] encoded %zu bytes into %zu tokens in %.1f ms\n", text.size(), ids.size(),
              elapsed.count());
}

TEST(StreamDecoder, HoldsBackIncompleteBytesAndFlushesReplacement) {
  const auto& t = deepseek();
  // A byte token that starts a 4-byte character and nothing after it.
  const auto ids = t.encode("😀", false);
  ASSERT_GT(ids.size(), 1u) << "expected the emoji to span several byte tokens";
  stream_decoder stream(t);
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.flush(), "\uFFFD");
}

TEST(TokenizerErrors, MissingDirectoryIsNotFound) {
  auto t = tokenizer::load("/nonexistent/model");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::not_found);
  EXPECT_EQ(t.err().message, "tokenizer.json not found in /nonexistent/model");
}

TEST(TokenizerErrors, MalformedJsonIsCorruptData) {
  const auto dir = test::fresh_dir("malformed");
  test::write_file(dir / "tokenizer.json", "{\"model\": [1, 2");
  auto t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_EQ(t.err().message, (dir / "tokenizer.json").string() + ": not valid JSON");
}

TEST(TokenizerErrors, WrongStructureIsCorruptData) {
  const auto dir = test::fresh_dir("structure");
  test::write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})");
  auto t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_TRUE(t.err().message.starts_with((dir / "tokenizer.json").string() + ": unexpected structure"))
      << t.err().message;

  test::write_file(dir / "tokenizer.json",
                   R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
                       "pre_tokenizer": {"type": "ByteLevel"}})");
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_EQ(t.err().message, (dir / "tokenizer.json").string() +
                                 ": merge 0 ('a' 'b') uses a token not in the vocabulary");
}

TEST(TokenizerErrors, UnsupportedModelAndPreTokenizer) {
  const auto dir = test::fresh_dir("unsupported");
  test::write_file(dir / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  auto t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::unsupported);
  EXPECT_EQ(t.err().message, (dir / "tokenizer.json").string() +
                                 ": model type 'Unigram' is not supported (only byte-level BPE)");

  test::write_tiny_tokenizer(dir, nullptr, json{{"type", "Metaspace"}, {"replacement", "▁"}});
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::unsupported);
  EXPECT_EQ(t.err().message, (dir / "tokenizer.json").string() +
                                 ": pre-tokenizer type 'Metaspace' is not supported");

  test::write_tiny_tokenizer(dir, nullptr,
                             json{{"type", "Split"}, {"pattern", {{"Regex", "a+?"}}}, {"behavior", "Isolated"}});
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::unsupported);
  EXPECT_EQ(t.err().message, (dir / "tokenizer.json").string() +
                                 ": Split pre-tokenizer: regex /a+?/: lazy or possessive quantifier at offset 2");
}

// What a hostile tokenizer.json could make us do: recurse once per regex node (a pattern of
// 1,100 nodes), emit an id outside any vocabulary, allocate a table of 16 M entries for one
// token, or copy a value nested a million deep. Each is refused at load.
TEST(TokenizerErrors, HostileFilesAreRefusedAtLoad) {
  const auto dir = test::fresh_dir("hostile");
  std::string many;
  for (int i = 0; i < 1100; ++i) many += "a?";
  test::write_tiny_tokenizer(
      dir, nullptr,
      json{{"type", "Sequence"},
           {"pretokenizers", json::array({json{{"type", "Split"}, {"pattern", {{"Regex", many}}}, {"behavior", "Isolated"}},
                                          json{{"type", "ByteLevel"}, {"use_regex", false}}})}});
  auto t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::unsupported);
  EXPECT_NE(t.err().message.find("1100 nodes, more than the limit of 1024"), std::string::npos) << t.err().message;

  const json template_with = [](std::int64_t id) {
    return json{{"type", "TemplateProcessing"},
                {"single", json::array({json{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                        json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                {"pair", json::array()},
                {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {id}}, {"tokens", {"<bos>"}}}}}}};
  }(-1);
  test::write_tiny_tokenizer(dir, nullptr, nullptr, nullptr, template_with);
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_NE(t.err().message.find("special token '<bos>' has id -1 out of range"), std::string::npos)
      << t.err().message;

  test::write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 16777215}, "merges": []}})");
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_NE(t.err().message.find("ids run up to 16777215 for 1 tokens"), std::string::npos) << t.err().message;

  test::write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                               "normalizer": )" + std::string(1'000'000, '[') +
                                               std::string(1'000'000, ']') + "}");
  t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_NE(t.err().message.find("nested"), std::string::npos) << t.err().message;
}

// A pattern built for catastrophic backtracking (twelve \p{L}* before a number that never
// comes: ~10^9 ways to split 30 letters at each start) spends its step budget and takes
// the rest of the piece as one match: encode returns, and round-trips, instead of hanging.
TEST(TokenizerErrors, ACatastrophicallyBacktrackingPatternStaysLinear) {
  std::string pattern;
  for (int i = 0; i < 12; ++i) pattern += "\\p{L}*";
  pattern += "\\p{N}";
  const auto dir = test::fresh_dir("backtracking");
  test::write_tiny_tokenizer(
      dir, nullptr,
      json{{"type", "Sequence"},
           {"pretokenizers",
            json::array({json{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}},
                         json{{"type", "ByteLevel"}, {"use_regex", false}}})}});
  auto t = tokenizer::load(dir);
  ASSERT_TRUE(t.ok()) << t.err().to_string();
  const std::string text = "abcdefghijklmnopqrstuvwxyzabcd and more words after it";
  const auto ids = t->encode(text, /*add_special=*/false);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(t->decode(ids), text);
}

TEST(TokenizerErrors, MalformedConfigIsCorruptData) {
  const auto dir = test::fresh_dir("bad_config");
  test::write_tiny_tokenizer(dir, nullptr);
  test::write_file(dir / "tokenizer_config.json", "not json");
  auto t = tokenizer::load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err().code, error_code::corrupt_data);
  EXPECT_EQ(t.err().message, (dir / "tokenizer_config.json").string() + ": not valid JSON");
}

// The format dsgen writes: ByteLevel pre-tokenizer, 256 byte tokens, merges, Llama-3
// special tokens, and a TemplateProcessing post-processor that adds BOS.
TEST(TinyTokenizer, RoundTripsAndAddsTemplateBos) {
  const auto dir = test::fresh_dir("tiny");
  const json post = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {276}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  test::write_tiny_tokenizer(dir, nullptr, nullptr, nullptr, post);
  auto t = tokenizer::load(dir);
  ASSERT_TRUE(t.ok()) << t.err().to_string();
  EXPECT_EQ(t->vocab_size(), 283);  // 256 bytes + 20 merges + 7 added
  EXPECT_EQ(t->token_id("<|begin_of_text|>"), 276);
  EXPECT_EQ(t->token_id("<|eot_id|>"), 280);
  // No tokenizer_config.json: no BOS token or chat template known, EOS unknown beyond
  // the family's end-of-turn tokens.
  EXPECT_EQ(t->bos_id(), std::nullopt);
  EXPECT_EQ(t->eos_ids(), (std::vector<std::int32_t>{280, 277, 282}));
  const std::string text = "the world is turning\n\n    in 你 <|eot_id|> done";
  const auto ids = t->encode(text);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 276);
  EXPECT_EQ(t->decode(ids), "<|begin_of_text|>" + text);
  // " the" and " world" are single merged tokens.
  const auto the = t->encode(" the world", false);
  EXPECT_EQ(the.size(), 2u);
  EXPECT_EQ(t->decode(the), " the world");
  for (const auto id : the) EXPECT_GE(id, 256);
}

TEST(TinyTokenizer, CleanUpTokenizationSpacesAppliesToDecodeAndStream) {
  const auto dir = test::fresh_dir("cleanup");
  test::write_tiny_tokenizer(dir, json{{"clean_up_tokenization_spaces", true}});
  auto t = tokenizer::load(dir);
  ASSERT_TRUE(t.ok()) << t.err().to_string();
  const std::string text = "I do n't know , really . It 's fine ! ok ?";
  const auto ids = t->encode(text, false);
  EXPECT_EQ(t->decode(ids), "I don't know, really. It's fine! ok?");
  stream_decoder stream(*t);
  std::string joined;
  for (auto id : ids) joined += stream.push(id);
  joined += stream.flush();
  EXPECT_EQ(joined, t->decode(ids));
}

}  // namespace
}  // namespace dsrt::tokenizer
