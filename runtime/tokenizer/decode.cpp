// tokenizer::decode and stream_decoder. Both walk the ids with the same incremental
// WHATWG UTF-8 decoder, so a stream's chunks concatenate to exactly decode()'s text.
#include <array>

#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {
namespace {

// The text one id contributes, with the UTF-8 decoder state carried across ids. An added
// token ends any pending byte sequence first, as the ByteLevel decoder decodes the byte
// runs between added tokens separately.
void decode_one(const tokenizer_data& d, std::int32_t id, bool skip_special, utf8_state& state,
                std::u32string& chars, std::string& out) {
  chars.clear();
  if (auto it = d.added_by_id.find(id); it != d.added_by_id.end()) {
    unicode::utf8_finish(state, chars);
    out += unicode::encode_utf8(chars);
    const added_token& token = d.added_tokens[it->second];
    if (!(skip_special && d.special_ids.contains(id))) out += token.content;
    return;
  }
  if (id < 0 || static_cast<std::size_t>(id) >= d.id_to_bytes.size() ||
      !d.id_in_vocab[static_cast<std::size_t>(id)]) {
    return;  // not a token of this vocabulary: contributes nothing
  }
  if (skip_special && d.special_ids.contains(id)) return;
  unicode::utf8_feed(state, d.id_to_bytes[static_cast<std::size_t>(id)], chars);
  out += unicode::encode_utf8(chars);
}

// Clean-up patterns in the order transformers applies them; each starts with a space.
struct clean_up_rule {
  std::string_view from;
  std::string_view to;
};
constexpr std::array<clean_up_rule, 10> clean_up_rules{{{" .", "."},
                                                        {" ?", "?"},
                                                        {" !", "!"},
                                                        {" ,", ","},
                                                        {" ' ", "'"},
                                                        {" n't", "n't"},
                                                        {" 'm", "'m"},
                                                        {" 's", "'s"},
                                                        {" 've", "'ve"},
                                                        {" 're", "'re"}}};

// Where text must be held back in a stream: the earliest suffix that could still grow
// into a clean-up pattern. Returns text.size() when nothing needs holding.
std::size_t hold_point(std::string_view text) {
  for (std::size_t p = text.size() >= 3 ? text.size() - 3 : 0; p < text.size(); ++p) {
    const std::string_view tail = text.substr(p);
    for (const auto& rule : clean_up_rules) {
      if (rule.from.size() > tail.size() && rule.from.starts_with(tail)) return p;
    }
  }
  return text.size();
}

}  // namespace

std::string clean_up_tokenization(std::string text) {
  for (const auto& rule : clean_up_rules) {
    std::string out;
    out.reserve(text.size());
    std::size_t pos = 0;
    while (true) {
      const std::size_t hit = text.find(rule.from, pos);
      if (hit == std::string::npos) break;
      out.append(text, pos, hit - pos);
      out += rule.to;
      pos = hit + rule.from.size();
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }
  return text;
}

std::string tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special) const {
  const tokenizer_data& d = *data_;
  std::string out;
  std::u32string chars;
  utf8_state state;
  for (std::int32_t id : ids) decode_one(d, id, skip_special, state, chars, out);
  chars.clear();
  unicode::utf8_finish(state, chars);
  out += unicode::encode_utf8(chars);
  if (d.clean_up_tokenization_spaces) out = clean_up_tokenization(std::move(out));
  return out;
}

stream_decoder::stream_decoder(const tokenizer& t, bool skip_special)
    : data_(&t.data()), skip_special_(skip_special) {}

std::string stream_decoder::push(std::int32_t id) {
  std::string text;
  std::u32string chars;
  decode_one(*data_, id, skip_special_, utf8_, chars, text);
  return release(std::move(text), false);
}

std::string stream_decoder::flush() {
  std::u32string chars;
  unicode::utf8_finish(utf8_, chars);
  return release(unicode::encode_utf8(chars), true);
}

std::string stream_decoder::release(std::string text, bool final) {
  if (!data_->clean_up_tokenization_spaces) return text;
  held_ += text;
  const std::size_t keep_from = final ? held_.size() : hold_point(held_);
  std::string ready = clean_up_tokenization(held_.substr(0, keep_from));
  held_.erase(0, keep_from);
  return ready;
}

}  // namespace dsrt::tokenizer
