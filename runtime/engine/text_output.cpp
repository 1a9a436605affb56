#include "runtime/engine/text_output.h"

#include <algorithm>

#include "kernels/assert.h"

namespace dsrt::engine {
namespace {

// Length of the longest suffix of text that is a proper prefix of some stop string.
std::size_t stop_prefix_suffix(std::string_view text, const std::vector<std::string>& stops) {
  std::size_t best = 0;
  for (const auto& s : stops)
    for (std::size_t len = std::min(s.size() - 1, text.size()); len > best; --len)
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        best = len;
        break;
      }
  return best;
}

}  // namespace

text_output::text_output(const tokenizer::tokenizer& tok, std::vector<std::string> stop_strings)
    : stops_(std::move(stop_strings)), decoder_(tok, /*skip_special=*/true) {}

std::string_view text_output::push(std::int32_t token) {
  DSRT_ASSERT(!stopped_, "push() after a stop string");
  text_ += decoder_.push(token);
  return release(false);
}

std::string_view text_output::finish() {
  if (!stopped_) text_ += decoder_.flush();
  return release(true);
}

std::string_view text_output::release(bool final_text) {
  if (!stopped_)
    for (const auto& s : stops_) {
      // Only text after what was already released can hold a new occurrence's end.
      const std::size_t from = released_ >= s.size() ? released_ - s.size() + 1 : 0;
      if (const std::size_t at = text_.find(s, from); at != std::string::npos) {
        text_.resize(at);
        stopped_ = true;
      }
    }
  const std::size_t hold = stopped_ || final_text ? 0 : stop_prefix_suffix(text_, stops_);
  const std::size_t upto = std::max(released_, text_.size() - hold);
  const std::string_view out = std::string_view(text_).substr(released_, upto - released_);
  released_ = upto;
  return out;
}

}  // namespace dsrt::engine
