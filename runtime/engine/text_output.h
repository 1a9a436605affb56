#pragma once
// The text of one generation as it streams: decodes tokens incrementally and applies stop
// strings. Text is released only once it is final — never inside a UTF-8 character and
// never a piece that could still turn out to be the start of a stop string — so a client
// never has to take back what it was sent. Shared by the generator and the serving batcher.
//
// Ownership: keeps a reference to the tokenizer, which must outlive it. Thread safety: none.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::engine {

class text_output {
 public:
  text_output(const tokenizer::tokenizer& tok, std::vector<std::string> stop_strings);

  // Adds a generated token; returns the text that became final with it (often empty).
  // After a stop string appears, text() ends before it and stopped() is true.
  // REQUIRES: !stopped() and finish() not called.
  std::string_view push(std::int32_t token);
  // The generation ended: flushes the decoder and releases every held-back byte.
  std::string_view finish();

  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }

 private:
  std::string_view release(bool final_text);

  std::vector<std::string> stops_;
  tokenizer::stream_decoder decoder_;
  std::string text_;
  std::size_t released_ = 0;   // bytes of text_ already returned
  bool stopped_ = false;
};

}  // namespace dsrt::engine
