#pragma once
// A small backtracking regex matcher for the pre-tokenizer patterns found in Hugging Face
// tokenizer.json files (GPT-2, Llama-3, Qwen2, DeepSeek-V3). std::regex has no Unicode
// classes, and no ICU is installed, so this implements exactly the constructs those
// patterns use, with Oniguruma/PCRE semantics (leftmost-first alternation, greedy
// quantifiers with backtracking):
//   literals and escapes (\r \n \t \f \v \xHH \uHHHH \\ \- ...), '.', character classes
//   [...] / [^...] with ranges, \s \S, \p{X} \P{X} (general categories), groups (...),
//   (?:...), (?i:...) (ASCII case folding), lookahead (?=...) (?!...), quantifiers
//   ? * + {n} {n,} {n,m} on characters and classes, and ? on groups.
// Anything else is an `unsupported` error naming the construct. Works on code points.
// Thread safety: a compiled regex is immutable; find() may be called concurrently.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/error.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {

class regex {
 public:
  static result<regex> compile(std::u32string_view pattern);

  struct match {
    std::size_t begin;
    std::size_t end;
  };
  // The leftmost match starting at or after `from`, if any. Matching visits at most
  // `steps` pattern nodes (backtracking included) and takes them from `steps`; once they
  // are spent, what is left of the text from the current start is one match. The budget a
  // caller gives one text, steps_for(its code points), is far more than the patterns of
  // real tokenizers use, and keeps a pattern built for catastrophic backtracking linear.
  std::optional<match> find(std::u32string_view text, std::size_t from, std::size_t& steps) const;
  // The same with a budget of steps_for(the code points from `from` on) for this call.
  std::optional<match> find(std::u32string_view text, std::size_t from) const;
  static constexpr std::size_t steps_per_code_point = 256;
  static constexpr std::size_t steps_base = 4096;
  static std::size_t steps_for(std::size_t code_points);

  // Set membership and nodes are public only for the implementation file's helpers.
  struct char_set {
    std::vector<std::pair<char32_t, char32_t>> ranges;
    unicode::category_mask categories = 0;      // \p{..}
    unicode::category_mask not_categories = 0;  // \P{..}
    bool white_space = false;                   // \s
    bool not_white_space = false;               // \S
    bool any_but_newline = false;               // .
    bool negated = false;
    bool ascii[128] = {};  // membership of ASCII, precomputed: the common case
    bool contains(char32_t c) const { return c < 128 ? ascii[c] : contains_slow(c); }
    bool contains_slow(char32_t c) const;
  };
  struct node;
  using sequence = std::vector<node>;
  struct node {
    enum class kind { set, group, lookahead } type = kind::set;
    char_set set;
    std::vector<sequence> alternatives;  // group and lookahead
    bool negative = false;               // lookahead (?!...)
    int min_count = 1;
    int max_count = 1;  // -1: unbounded
  };

 private:
  std::vector<sequence> alternatives_;
};

}  // namespace dsrt::tokenizer
