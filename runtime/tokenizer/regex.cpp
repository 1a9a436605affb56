#include "runtime/tokenizer/regex.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace dsrt::tokenizer {
namespace {

constexpr std::size_t no_match = static_cast<std::size_t>(-1);
// Nesting limit for groups: the patterns we support nest two or three deep.
constexpr int group_depth_max = 32;
// Nodes (characters, classes, groups, lookaheads) in one pattern: the pre-tokenizer
// patterns have a few dozen; matching recurses once per node of a path, so this bounds
// the stack a hostile tokenizer.json can make encode() use.
constexpr std::size_t regex_nodes_max = 1024;

std::size_t count_nodes(const std::vector<regex::sequence>& alternatives) {
  std::size_t n = 0;
  for (const auto& seq : alternatives)
    for (const auto& node : seq) n += 1 + count_nodes(node.alternatives);
  return n;
}

std::string describe(std::u32string_view pattern) {
  return unicode::encode_utf8(pattern);
}

void finish_set(regex::char_set& set) {
  for (char32_t c = 0; c < 128; ++c) set.ascii[c] = set.contains_slow(c);
}

regex::char_set single(char32_t c, bool fold_case) {
  regex::char_set set;
  set.ranges.push_back({c, c});
  if (fold_case && c < 128 && std::isalpha(static_cast<int>(c))) {
    const char32_t other = std::islower(static_cast<int>(c)) ? c - 32 : c + 32;
    set.ranges.push_back({other, other});
  }
  finish_set(set);
  return set;
}

class parser {
 public:
  explicit parser(std::u32string_view p) : p_(p) {}

  result<std::vector<regex::sequence>> parse_all() {
    auto alts = parse_alternatives(false, 0);
    if (!alts.ok()) return alts.err();
    if (pos_ != p_.size()) return fail("unbalanced ')'");
    return alts;
  }

 private:
  error fail(std::string_view what) const {
    return make_error(error_code::unsupported, "regex /{}/: {} at offset {}", describe(p_), what,
                      pos_);
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char32_t peek() const { return p_[pos_]; }

  result<std::vector<regex::sequence>> parse_alternatives(bool fold_case, int depth) {
    if (depth > group_depth_max) return fail("groups nested too deeply");
    std::vector<regex::sequence> alts(1);
    while (!at_end() && peek() != U')') {
      if (peek() == U'|') {
        ++pos_;
        alts.emplace_back();
        continue;
      }
      auto item = parse_item(fold_case, depth);
      if (!item.ok()) return item.err();
      alts.back().push_back(std::move(item.value()));
    }
    return alts;
  }

  result<regex::node> parse_item(bool fold_case, int depth) {
    regex::node n;
    const char32_t c = peek();
    if (c == U'(') {
      ++pos_;
      bool inner_fold = fold_case;
      n.type = regex::node::kind::group;
      if (!at_end() && peek() == U'?') {
        ++pos_;
        const std::u32string_view rest = p_.substr(pos_);
        if (rest.starts_with(U":")) {
          pos_ += 1;
        } else if (rest.starts_with(U"i:")) {
          pos_ += 2;
          inner_fold = true;
        } else if (rest.starts_with(U"=") || rest.starts_with(U"!")) {
          n.type = regex::node::kind::lookahead;
          n.negative = rest[0] == U'!';
          pos_ += 1;
        } else {
          return fail("unsupported group syntax (?");
        }
      }
      auto alts = parse_alternatives(inner_fold, depth + 1);
      if (!alts.ok()) return alts.err();
      if (at_end() || peek() != U')') return fail("missing ')'");
      ++pos_;
      n.alternatives = std::move(alts.value());
    } else if (c == U'[') {
      auto set = parse_class(fold_case);
      if (!set.ok()) return set.err();
      n.set = std::move(set.value());
    } else if (c == U'.') {
      ++pos_;
      n.set.any_but_newline = true;
      finish_set(n.set);
    } else if (c == U'^' || c == U'$') {
      return fail("anchors are not supported");
    } else if (c == U'*' || c == U'+' || c == U'?' || c == U'{') {
      return fail("quantifier without an operand");
    } else if (c == U'\\') {
      auto set = parse_escape(fold_case);
      if (!set.ok()) return set.err();
      n.set = std::move(set.value());
    } else {
      ++pos_;
      n.set = single(c, fold_case);
    }
    DSRT_TRY(parse_quantifier(n));
    return n;
  }

  status parse_quantifier(regex::node& n) {
    if (at_end()) return ok_status();
    const char32_t c = peek();
    if (c == U'?') {
      n.min_count = 0, n.max_count = 1;
    } else if (c == U'*') {
      n.min_count = 0, n.max_count = -1;
    } else if (c == U'+') {
      n.min_count = 1, n.max_count = -1;
    } else if (c == U'{') {
      const std::size_t close = p_.find(U'}', pos_);
      if (close == std::u32string_view::npos) return fail("unterminated {");
      const std::string body = describe(p_.substr(pos_ + 1, close - pos_ - 1));
      int lo = 0, hi = 0;
      char comma = 0;
      char extra = 0;
      const int fields = std::sscanf(body.c_str(), "%d%c%d%c", &lo, &comma, &hi, &extra);
      if (fields == 1) {
        hi = lo;
      } else if (fields == 2 && comma == ',') {
        hi = -1;
      } else if (fields != 3 || comma != ',') {
        return fail("bad {n,m} quantifier");
      }
      if (lo < 0 || (hi >= 0 && hi < lo)) return fail("bad {n,m} bounds");
      n.min_count = lo, n.max_count = hi;
      pos_ = close;
    } else {
      return ok_status();
    }
    ++pos_;
    if (!at_end() && (peek() == U'?' || peek() == U'+')) return fail("lazy or possessive quantifier");
    if (n.type == regex::node::kind::lookahead) return fail("quantified lookahead");
    if (n.type == regex::node::kind::group && !(n.min_count == 0 && n.max_count == 1)) {
      return fail("quantifier other than ? on a group");
    }
    return ok_status();
  }

  // Parses one escape sequence into `set` (adding to it, for use inside classes).
  status parse_escape_into(regex::char_set& set, bool fold_case, char32_t* literal) {
    ++pos_;  // the backslash
    if (at_end()) return fail("trailing backslash");
    const char32_t c = p_[pos_++];
    auto add = [&](char32_t v) {
      if (literal) *literal = v;
      set.ranges.push_back({v, v});
      if (fold_case && v < 128 && std::isalpha(static_cast<int>(v))) {
        const char32_t other = std::islower(static_cast<int>(v)) ? v - 32 : v + 32;
        set.ranges.push_back({other, other});
      }
    };
    auto hex = [&](std::size_t digits) -> result<char32_t> {
      if (pos_ + digits > p_.size()) return fail("short hex escape");
      char32_t v = 0;
      for (std::size_t i = 0; i < digits; ++i) {
        const char32_t h = p_[pos_++];
        int d = h >= U'0' && h <= U'9'   ? int(h - U'0')
                : h >= U'a' && h <= U'f' ? int(h - U'a' + 10)
                : h >= U'A' && h <= U'F' ? int(h - U'A' + 10)
                                         : -1;
        if (d < 0) return fail("bad hex digit");
        v = v * 16 + static_cast<char32_t>(d);
      }
      return v;
    };
    switch (c) {
      case U's': set.white_space = true; return ok_status();
      case U'S': set.not_white_space = true; return ok_status();
      case U'n': add(U'\n'); return ok_status();
      case U'r': add(U'\r'); return ok_status();
      case U't': add(U'\t'); return ok_status();
      case U'f': add(U'\f'); return ok_status();
      case U'v': add(U'\v'); return ok_status();
      case U'x': {
        auto v = hex(2);
        if (!v.ok()) return v.err();
        add(*v);
        return ok_status();
      }
      case U'u': {
        auto v = hex(4);
        if (!v.ok()) return v.err();
        add(*v);
        return ok_status();
      }
      case U'p':
      case U'P': {
        if (at_end() || peek() != U'{') return fail("\\p without {name}");
        const std::size_t close = p_.find(U'}', pos_);
        if (close == std::u32string_view::npos) return fail("unterminated \\p{");
        const std::string name = describe(p_.substr(pos_ + 1, close - pos_ - 1));
        const auto mask = unicode::category_mask_from_name(name);
        if (mask == 0) return fail("unknown Unicode property \\p{" + name + "}");
        (c == U'p' ? set.categories : set.not_categories) |= mask;
        pos_ = close + 1;
        return ok_status();
      }
      default:
        if ((c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z') || (c >= U'0' && c <= U'9')) {
          return fail(fmt::format("escape \\{} is not supported", static_cast<char>(c)));
        }
        add(c);  // an escaped punctuation character stands for itself
        return ok_status();
    }
  }

  result<regex::char_set> parse_escape(bool fold_case) {
    regex::char_set set;
    DSRT_TRY(parse_escape_into(set, fold_case, nullptr));
    finish_set(set);
    return set;
  }

  result<regex::char_set> parse_class(bool fold_case) {
    ++pos_;  // '['
    regex::char_set set;
    if (!at_end() && peek() == U'^') {
      set.negated = true;
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (at_end()) return fail("unterminated character class");
      char32_t c = peek();
      if (c == U']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      if (c == U'[') return fail("nested character class");
      char32_t low = 0;
      bool is_literal = true;
      if (c == U'\\') {
        const std::size_t ranges_before = set.ranges.size();
        char32_t literal = static_cast<char32_t>(-1);
        DSRT_TRY(parse_escape_into(set, false, &literal));
        if (literal == static_cast<char32_t>(-1)) {
          is_literal = false;
        } else {
          low = literal;
          set.ranges.resize(ranges_before);
        }
      } else {
        low = c;
        ++pos_;
      }
      if (!is_literal) continue;
      char32_t high = low;
      if (pos_ + 1 < p_.size() && peek() == U'-' && p_[pos_ + 1] != U']') {
        ++pos_;
        if (peek() == U'\\') {
          regex::char_set scratch;
          char32_t literal = static_cast<char32_t>(-1);
          DSRT_TRY(parse_escape_into(scratch, false, &literal));
          if (literal == static_cast<char32_t>(-1)) return fail("class escape as a range end");
          high = literal;
        } else {
          high = p_[pos_++];
        }
        if (high < low) return fail("reversed range in class");
      }
      set.ranges.push_back({low, high});
      if (fold_case) {
        // ASCII letters only: the (?i:...) groups in tokenizer patterns are English
        // contractions.
        for (char32_t v = std::max<char32_t>(low, U'A'); v <= std::min<char32_t>(high, U'z'); ++v) {
          if (std::isalpha(static_cast<int>(v))) {
            const char32_t other = std::islower(static_cast<int>(v)) ? v - 32 : v + 32;
            set.ranges.push_back({other, other});
          }
        }
      }
    }
    finish_set(set);
    return set;
  }

  std::u32string_view p_;
  std::size_t pos_ = 0;
};

// What to match after the current sequence ends: a linked stack of resume points, so
// that backtracking into a group's alternatives can continue with the rest of the
// pattern without copying anything.
struct continuation {
  const regex::sequence* seq;
  std::size_t index;
  const continuation* next;
};

// `steps`: node visits left (find's budget); at 0 every match fails at once.
std::size_t match_sequence(std::u32string_view text, const regex::sequence& seq,
                           std::size_t index, std::size_t pos, const continuation* k, std::size_t& steps);

std::size_t match_alternatives(std::u32string_view text, const std::vector<regex::sequence>& alts,
                               std::size_t pos, const continuation* k, std::size_t& steps) {
  for (const auto& alt : alts) {
    const std::size_t end = match_sequence(text, alt, 0, pos, k, steps);
    if (end != no_match) return end;
  }
  return no_match;
}

std::size_t match_sequence(std::u32string_view text, const regex::sequence& seq,
                           std::size_t index, std::size_t pos, const continuation* k, std::size_t& steps) {
  if (steps == 0) return no_match;
  --steps;
  if (index == seq.size()) {
    if (k == nullptr) return pos;
    return match_sequence(text, *k->seq, k->index, pos, k->next, steps);
  }
  const regex::node& n = seq[index];
  switch (n.type) {
    case regex::node::kind::set: {
      // Greedy: take as many as allowed, then give back one at a time. Iterative, so a
      // long run of letters costs no stack.
      const std::size_t max_count =
          n.max_count < 0 ? text.size() - pos
                          : std::min<std::size_t>(static_cast<std::size_t>(n.max_count),
                                                  text.size() - pos);
      std::size_t count = 0;
      while (count < max_count && n.set.contains(text[pos + count])) ++count;
      for (std::size_t c = count + 1; c-- > static_cast<std::size_t>(n.min_count);) {
        const std::size_t end = match_sequence(text, seq, index + 1, pos + c, k, steps);
        if (end != no_match) return end;
      }
      return no_match;
    }
    case regex::node::kind::lookahead: {
      const bool found = match_alternatives(text, n.alternatives, pos, nullptr, steps) != no_match;
      if (found == n.negative) return no_match;
      return match_sequence(text, seq, index + 1, pos, k, steps);
    }
    case regex::node::kind::group: {
      const continuation after{&seq, index + 1, k};
      const std::size_t end = match_alternatives(text, n.alternatives, pos, &after, steps);
      if (end != no_match || n.min_count > 0) return end;
      return match_sequence(text, seq, index + 1, pos, k, steps);  // the group is optional
    }
  }
  return no_match;
}

}  // namespace

bool regex::char_set::contains_slow(char32_t c) const {
  bool in = false;
  if (any_but_newline) in = c != U'\n';
  for (const auto& [lo, hi] : ranges) in = in || (c >= lo && c <= hi);
  if (!in && (categories | not_categories) != 0) {
    const auto m = unicode::mask_of(unicode::category(c));
    in = (categories & m) != 0 || (not_categories != 0 && (not_categories & m) == 0);
  }
  if (!in && (white_space || not_white_space)) {
    const bool ws = unicode::is_white_space(c);
    in = (white_space && ws) || (not_white_space && !ws);
  }
  return in != negated;
}

result<regex> regex::compile(std::u32string_view pattern) {
  parser p(pattern);
  auto alts = p.parse_all();
  if (!alts.ok()) return alts.err();
  if (const auto nodes = count_nodes(alts.value()); nodes > regex_nodes_max)
    return make_error(error_code::unsupported, "regex of {} code points: {} nodes, more than the limit of {}",
                      pattern.size(), nodes, regex_nodes_max);
  regex r;
  r.alternatives_ = std::move(alts.value());
  return r;
}

std::size_t regex::steps_for(std::size_t code_points) {
  return steps_per_code_point * (code_points + 1) + steps_base;
}

std::optional<regex::match> regex::find(std::u32string_view text, std::size_t from) const {
  std::size_t steps = steps_for(text.size() - std::min(from, text.size()));
  return find(text, from, steps);
}

std::optional<regex::match> regex::find(std::u32string_view text, std::size_t from, std::size_t& steps) const {
  for (std::size_t start = from; start <= text.size(); ++start) {
    const std::size_t end = match_alternatives(text, alternatives_, start, nullptr, steps);
    if (end != no_match) return match{start, end};
    if (steps == 0) return match{start, text.size()};   // out of budget: the rest is one match
  }
  return std::nullopt;
}

}  // namespace dsrt::tokenizer
