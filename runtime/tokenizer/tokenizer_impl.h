#pragma once
// The loaded form of a tokenizer.json + tokenizer_config.json. Private to
// runtime/tokenizer: tokenizer_load.cpp builds it, encode.cpp and decode.cpp use it.
#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::tokenizer {

// How a Split pre-tokenizer treats the pieces its pattern matches (HF's
// SplitDelimiterBehavior).
enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct split_step {
  std::optional<regex> pattern;  // a Regex pattern, or else...
  std::u32string literal;        // ...a String pattern
  split_behavior behavior = split_behavior::isolated;
  bool invert = false;
};
struct byte_level_step {
  bool add_prefix_space = false;
  bool use_regex = true;  // split with the GPT-2 pattern first
};
// One step of the pre-tokenizer pipeline. (A struct rather than a std::variant: GCC 12
// reports false maybe-uninitialized warnings on the variant.)
struct pre_tokenizer_step {
  bool is_byte_level = false;
  split_step split;
  byte_level_step byte_level;
};

struct added_token {
  std::string content;
  std::int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

struct merge_rule {
  std::int32_t rank;
  std::int32_t merged_id;
};

// A byte trie over the added tokens' contents, for longest-match splitting.
struct added_token_trie {
  struct node {
    std::unordered_map<unsigned char, std::int32_t> next;
    std::int32_t token = -1;  // index into tokenizer_data::added_tokens
  };
  std::vector<node> nodes{1};
  void insert(std::string_view text, std::int32_t token);
};

struct tokenizer_data {
  // The BPE model. Vocabulary keys are byte-level strings (bytes mapped to printable
  // characters, as GPT-2 does).
  std::unordered_map<std::string, std::int32_t> vocab;
  std::vector<std::string> id_to_bytes;  // raw bytes of each vocab id; index = id
  std::vector<bool> id_in_vocab;
  std::unordered_map<std::uint64_t, merge_rule> merges;  // key: left id << 32 | right id
  std::array<std::int32_t, 256> byte_ids{};              // -1 where a byte has no token
  std::optional<std::int32_t> unk_id;
  bool ignore_merges = false;

  std::vector<added_token> added_tokens;
  std::unordered_map<std::int32_t, std::size_t> added_by_id;
  std::unordered_map<std::string, std::size_t> added_by_content;
  added_token_trie added_trie;
  std::unordered_set<std::int32_t> special_ids;

  bool normalize_nfc = false;
  std::vector<pre_tokenizer_step> pre_tokenizer;
  split_step gpt2_split;  // for ByteLevel with use_regex: the GPT-2 pattern, Isolated

  std::vector<std::int32_t> prefix_ids;  // added by encode(add_special = true)
  std::vector<std::int32_t> suffix_ids;
  std::optional<std::int32_t> bos_id;
  std::vector<std::int32_t> eos_ids;
  std::string bos_token;
  std::string eos_token;
  std::string chat_template;
  bool clean_up_tokenization_spaces = false;
  int vocab_size = 0;

  // Word -> ids cache: text repeats words heavily. Bounded; cleared when full.
  static constexpr std::size_t word_cache_entries_max = 1 << 16;
  static constexpr std::size_t word_cache_word_bytes_max = 256;
  mutable std::mutex word_cache_mutex;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> word_cache;
};

// The GPT-2 byte <-> printable character mapping used by ByteLevel.
const std::array<char32_t, 256>& byte_to_char();
// Returns -1 for a character that is not in the mapping.
int char_to_byte(char32_t c);

// Hugging Face's clean_up_tokenization: removes the space before punctuation and
// English contractions (" ." -> ".", " n't" -> "n't", ...), pattern by pattern.
std::string clean_up_tokenization(std::string text);

}  // namespace dsrt::tokenizer
