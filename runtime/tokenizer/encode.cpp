// tokenizer::encode and the small accessors: added-token splitting, normalization,
// pre-tokenization and byte-level BPE.
#include <algorithm>
#include <queue>

#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {
namespace {

// A piece of input between added tokens: text to tokenize, or one added token.
struct section {
  std::string_view text;
  const added_token* token = nullptr;
};

bool is_word_char(char32_t c) {
  using gc = unicode::general_category;
  const auto m = unicode::mask_of(unicode::category(c));
  constexpr auto word = unicode::mask_of(gc::Lu) | unicode::mask_of(gc::Ll) |
                        unicode::mask_of(gc::Lt) | unicode::mask_of(gc::Lm) |
                        unicode::mask_of(gc::Lo) | unicode::mask_of(gc::Nd) |
                        unicode::mask_of(gc::Pc);
  return (m & word) != 0;
}

// The last / first code point of valid UTF-8 text.
char32_t last_char(std::string_view s) {
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return unicode::decode_utf8(s.substr(i)).front();
}
char32_t first_char(std::string_view s) {
  std::size_t n = 1;
  while (n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) ++n;
  return unicode::decode_utf8(s.substr(0, n)).front();
}

std::string_view trim_white_space(std::string_view s, bool left) {
  while (!s.empty()) {
    const char32_t c = left ? first_char(s) : last_char(s);
    if (!unicode::is_white_space(c)) break;
    std::string tmp;
    unicode::append_utf8(tmp, c);
    s = left ? s.substr(tmp.size()) : s.substr(0, s.size() - tmp.size());
  }
  return s;
}

// Splits on added tokens, leftmost and then longest match first (what HF's Aho-Corasick
// matcher and transformers.js do), then applies lstrip/rstrip to the neighbours.
std::vector<section> split_added_tokens(const tokenizer_data& d, std::string_view text) {
  std::vector<section> out;
  std::size_t start = 0;
  std::size_t i = 0;
  const auto& nodes = d.added_trie.nodes;
  while (i < text.size()) {
    std::int32_t best = -1;
    std::size_t best_end = 0;
    std::size_t at = 0;
    for (std::size_t j = i; j < text.size(); ++j) {
      const auto it = nodes[at].next.find(static_cast<unsigned char>(text[j]));
      if (it == nodes[at].next.end()) break;
      at = static_cast<std::size_t>(it->second);
      if (nodes[at].token >= 0) {
        const auto& candidate = d.added_tokens[static_cast<std::size_t>(nodes[at].token)];
        const bool boundary_ok =
            !candidate.single_word ||
            ((i == 0 || !is_word_char(last_char(text.substr(0, i)))) &&
             (j + 1 == text.size() || !is_word_char(first_char(text.substr(j + 1)))));
        if (boundary_ok) {
          best = nodes[at].token;
          best_end = j + 1;
        }
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), nullptr});
    out.push_back({text.substr(i, best_end - i), &d.added_tokens[static_cast<std::size_t>(best)]});
    i = start = best_end;
  }
  if (start < text.size()) out.push_back({text.substr(start), nullptr});
  for (std::size_t k = 0; k < out.size(); ++k) {
    if (out[k].token == nullptr) continue;
    if (out[k].token->lstrip && k > 0 && out[k - 1].token == nullptr) {
      out[k - 1].text = trim_white_space(out[k - 1].text, false);
    }
    if (out[k].token->rstrip && k + 1 < out.size() && out[k + 1].token == nullptr) {
      out[k + 1].text = trim_white_space(out[k + 1].text, true);
    }
  }
  return out;
}

// One Split step over one piece. Matches and the gaps between them become pieces as the
// behavior says; invert swaps which is which.
void split_piece(const split_step& step, const std::u32string& piece,
                 std::vector<std::u32string>& out) {
  struct span {
    std::size_t begin, end;
    bool matched;
  };
  std::vector<span> spans;
  std::size_t pos = 0;
  std::size_t from = 0;
  std::size_t steps = regex::steps_for(piece.size());   // for every match in the piece together
  while (from <= piece.size()) {
    std::size_t begin = 0, end = 0;
    if (step.pattern) {
      const auto m = step.pattern->find(piece, from, steps);
      if (!m) break;
      begin = m->begin, end = m->end;
    } else {
      begin = piece.find(step.literal, from);
      if (begin == std::u32string::npos) break;
      end = begin + step.literal.size();
    }
    if (end == begin) {  // an empty match splits nothing; move on
      from = begin + 1;
      continue;
    }
    if (begin > pos) spans.push_back({pos, begin, false});
    spans.push_back({begin, end, true});
    pos = from = end;
  }
  if (pos < piece.size()) spans.push_back({pos, piece.size(), false});
  if (step.invert) {
    for (auto& s : spans) s.matched = !s.matched;
  }
  std::vector<std::u32string> local;
  bool pending_next = false;  // merged_with_next: a match waits for the following piece
  bool last_matched = false;
  for (const auto& s : spans) {
    const std::u32string text = piece.substr(s.begin, s.end - s.begin);
    switch (step.behavior) {
      case split_behavior::removed:
        if (!s.matched) local.push_back(text);
        break;
      case split_behavior::isolated:
        local.push_back(text);
        break;
      case split_behavior::merged_with_previous:
        if (s.matched && !local.empty() && !last_matched) {
          local.back() += text;
        } else {
          local.push_back(text);
        }
        break;
      case split_behavior::merged_with_next:
        if (pending_next) {
          local.back() += text;
        } else {
          local.push_back(text);
        }
        pending_next = s.matched;
        break;
      case split_behavior::contiguous:
        if (s.matched && last_matched && !local.empty()) {
          local.back() += text;
        } else {
          local.push_back(text);
        }
        break;
    }
    last_matched = s.matched;
  }
  for (auto& l : local) out.push_back(std::move(l));
}

std::vector<std::u32string> pre_tokenize(const tokenizer_data& d, std::u32string text) {
  std::vector<std::u32string> pieces;
  pieces.push_back(std::move(text));
  for (const auto& step : d.pre_tokenizer) {
    std::vector<std::u32string> next;
    next.reserve(pieces.size());
    if (!step.is_byte_level) {
      for (const auto& p : pieces) split_piece(step.split, p, next);
    } else {
      const auto& byte_level = step.byte_level;
      for (auto& p : pieces) {
        if (byte_level.add_prefix_space && (p.empty() || p[0] != U' ')) p.insert(p.begin(), U' ');
        if (byte_level.use_regex) {
          split_piece(d.gpt2_split, p, next);
        } else {
          next.push_back(std::move(p));
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

// Byte-level BPE over one pre-tokenized word: merges the adjacent pair of best rank
// (leftmost on ties) until none applies. O(n log n) with a heap and a linked list.
std::vector<std::int32_t> bpe(const tokenizer_data& d, std::string_view bytes) {
  struct symbol {
    std::int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<symbol> symbols;
  symbols.reserve(bytes.size());
  for (unsigned char b : bytes) {
    const std::int32_t id = d.byte_ids[b] >= 0 ? d.byte_ids[b] : d.unk_id.value_or(-1);
    if (id < 0) continue;  // a byte with no token and no unk: HF would fail; we drop it
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;
  struct candidate {
    std::int32_t rank;
    int pos;
    std::int32_t merged_id;
    bool operator>(const candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
  const auto consider = [&](int left) {
    const int right = symbols[static_cast<std::size_t>(left)].next;
    if (right < 0) return;
    const std::uint64_t key =
        (std::uint64_t(std::uint32_t(symbols[static_cast<std::size_t>(left)].id)) << 32) |
        std::uint32_t(symbols[static_cast<std::size_t>(right)].id);
    const auto it = d.merges.find(key);
    if (it != d.merges.end()) queue.push({it->second.rank, left, it->second.merged_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const candidate top = queue.top();
    queue.pop();
    symbol& left = symbols[static_cast<std::size_t>(top.pos)];
    if (!left.alive || left.next < 0) continue;
    symbol& right = symbols[static_cast<std::size_t>(left.next)];
    // Stale entry: one side merged since it was queued.
    const std::uint64_t key = (std::uint64_t(std::uint32_t(left.id)) << 32) | std::uint32_t(right.id);
    const auto it = d.merges.find(key);
    if (it == d.merges.end() || it->second.merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  std::vector<std::int32_t> ids;
  for (int i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    ids.push_back(symbols[static_cast<std::size_t>(i)].id);
  }
  return ids;
}

void encode_word(const tokenizer_data& d, std::string_view bytes, std::vector<std::int32_t>& out) {
  const bool cacheable = bytes.size() <= tokenizer_data::word_cache_word_bytes_max;
  if (cacheable) {
    std::lock_guard lock(d.word_cache_mutex);
    if (auto it = d.word_cache.find(std::string(bytes)); it != d.word_cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::int32_t> ids;
  if (d.ignore_merges) {
    std::string mapped;
    for (unsigned char b : bytes) unicode::append_utf8(mapped, byte_to_char()[b]);
    if (auto it = d.vocab.find(mapped); it != d.vocab.end()) ids.push_back(it->second);
  }
  if (ids.empty()) ids = bpe(d, bytes);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(d.word_cache_mutex);
    if (d.word_cache.size() >= tokenizer_data::word_cache_entries_max) d.word_cache.clear();
    d.word_cache.emplace(std::string(bytes), std::move(ids));
  }
}

}  // namespace

const std::array<char32_t, 256>& byte_to_char() {
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to
  // U+0100 onwards, so every byte has a visible, non-space character.
  static const auto table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

int char_to_byte(char32_t c) {
  static const auto inverse = [] {
    std::array<int, 512> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_to_char()[static_cast<std::size_t>(b)]] = b;
    return t;
  }();
  return c < 512 ? inverse[c] : -1;
}

std::vector<std::int32_t> tokenizer::encode(std::string_view text, bool add_special) const {
  const tokenizer_data& d = *data_;
  // Invalid UTF-8 becomes U+FFFD first, as the reference (JavaScript) implementation sees
  // it; everything below then works on valid UTF-8.
  const std::string valid = unicode::encode_utf8(unicode::decode_utf8(text));
  std::vector<std::int32_t> ids;
  ids.reserve(valid.size() / 3 + d.prefix_ids.size() + d.suffix_ids.size() + 1);
  if (add_special) ids.insert(ids.end(), d.prefix_ids.begin(), d.prefix_ids.end());
  std::string piece_bytes;
  for (const section& s : split_added_tokens(d, valid)) {
    if (s.token != nullptr) {
      ids.push_back(s.token->id);
      continue;
    }
    if (s.text.empty()) continue;
    std::u32string chars = unicode::decode_utf8(s.text);
    if (d.normalize_nfc) chars = unicode::nfc(chars);
    for (const auto& piece : pre_tokenize(d, std::move(chars))) {
      piece_bytes.clear();
      for (char32_t c : piece) unicode::append_utf8(piece_bytes, c);
      if (!piece_bytes.empty()) encode_word(d, piece_bytes, ids);
    }
  }
  if (add_special) ids.insert(ids.end(), d.suffix_ids.begin(), d.suffix_ids.end());
  return ids;
}

int tokenizer::vocab_size() const { return data_->vocab_size; }

std::optional<std::int32_t> tokenizer::token_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = data_->added_by_content.find(key); it != data_->added_by_content.end()) {
    return data_->added_tokens[it->second].id;
  }
  if (auto it = data_->vocab.find(key); it != data_->vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::int32_t> tokenizer::bos_id() const { return data_->bos_id; }
std::vector<std::int32_t> tokenizer::eos_ids() const { return data_->eos_ids; }
bool tokenizer::is_special(std::int32_t id) const { return data_->special_ids.contains(id); }

}  // namespace dsrt::tokenizer
