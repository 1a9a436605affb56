#pragma once
// Hugging Face tokenizers for the models dsrt serves: byte-level BPE loaded from a model
// directory's tokenizer.json (+ tokenizer_config.json), streaming decode, and the chat
// templates of the DeepSeek-V3/R1, Qwen2/2.5 and Llama-3 families. docs/TOKENIZER.md
// lists what is supported and how parity with a reference implementation is tested.
//
// Thread safety: a loaded tokenizer is immutable apart from an internal, locked word
// cache; all const member functions may be called concurrently. Copies are cheap and
// share the loaded data. A stream_decoder is single-threaded and must not outlive the
// tokenizer it was made from.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/error.h"

namespace dsrt::tokenizer {

struct tokenizer_data;  // the loaded model; tokenizer_impl.h

// The state of a WHATWG UTF-8 decoder between two pieces of input (unicode.h).
struct utf8_state {
  int needed = 0;  // continuation bytes the current character still needs
  int seen = 0;
  unsigned lower = 0x80;  // allowed range of the next continuation byte
  unsigned upper = 0xBF;
  char32_t code_point = 0;
};

class tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (needed for the
  // BOS/EOS tokens and the chat template). Errors: not_found (no tokenizer.json),
  // corrupt_data (malformed JSON or structure; the message names the file), unsupported
  // (a model type, normalizer, pre-tokenizer or decoder we do not implement).
  static result<tokenizer> load(const std::filesystem::path& model_dir);

  // Invalid UTF-8 in `text` is replaced, per maximal invalid subsequence, by U+FFFD before
  // tokenizing (what JavaScript's TextDecoder does). add_special adds the tokens the
  // model's post-processing adds (BOS for DeepSeek and Llama-3, nothing for Qwen2).
  std::vector<std::int32_t> encode(std::string_view text, bool add_special = true) const;
  // Ids outside the vocabulary are skipped. Bytes that do not form valid UTF-8 decode to
  // U+FFFD, per maximal invalid subsequence.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const;

  int vocab_size() const;  // max id + 1 over the vocabulary and the added tokens
  std::optional<std::int32_t> token_id(std::string_view token) const;
  std::optional<std::int32_t> bos_id() const;
  // The eos_token of tokenizer_config.json first, then the family's other end-of-turn
  // tokens that exist in the vocabulary (<|eot_id|>, <|eom_id|>, <|im_end|>, ...).
  std::vector<std::int32_t> eos_ids() const;
  bool is_special(std::int32_t id) const;

  // The loaded data, for stream_decoder and format_chat.
  const tokenizer_data& data() const { return *data_; }

 private:
  explicit tokenizer(std::shared_ptr<const tokenizer_data> data) : data_(std::move(data)) {}
  std::shared_ptr<const tokenizer_data> data_;
};

// Streaming decode: feed ids one at a time and get text that never ends inside a UTF-8
// character (incomplete bytes are held back until completed); flush() returns the rest,
// with U+FFFD for an incomplete tail. The concatenation of all chunks equals
// tokenizer::decode of all the ids.
class stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& t, bool skip_special = false);
  std::string push(std::int32_t id);
  std::string flush();

 private:
  std::string release(std::string text, bool final);

  const tokenizer_data* data_;
  bool skip_special_;
  utf8_state utf8_;  // bytes of a character not yet complete
  // Decoded text held back because clean-up of tokenization spaces may still change it.
  std::string held_;
};

struct chat_message {
  std::string role;
  std::string content;
};

// Formats a conversation with the model's chat template (tokenizer_config.json
// "chat_template"), rendering it exactly as the Jinja template would. The DeepSeek-V3/R1,
// Qwen2/Qwen2.5 and Llama-3/3.1 template families are recognised (the R1-Distill models
// use the DeepSeek template); any other template is error_code::unsupported.
result<std::string> format_chat(const tokenizer& t, std::span<const chat_message> messages,
                                bool add_generation_prompt = true);

}  // namespace dsrt::tokenizer
