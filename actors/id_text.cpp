#include "actors/id_text.h"

namespace dsrt::actors {

std::string with_id_replaced(const std::string& text, std::uint64_t from, std::uint64_t to) {
  const std::string needle = std::to_string(from), replacement = std::to_string(to);
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto at = text.find(needle, i);
    if (at == std::string::npos) break;
    const std::size_t end = at + needle.size();
    const auto names_request = [&] {
      const std::string_view before(text.data(), at);
      return before.ends_with("request ") || before.ends_with("request id ") || before.ends_with("sequence ");
    };
    const bool standalone = (at == 0 || !is_digit(text[at - 1])) && (end == text.size() || !is_digit(text[end])) &&
                            names_request();
    out.append(text, i, at - i);
    if (standalone) {
      out += replacement;
      i = end;
    } else {   // part of a longer number: keep that number whole
      std::size_t j = at;
      while (j < text.size() && is_digit(text[j])) ++j;
      out.append(text, at, j - at);
      i = j;
    }
  }
  out.append(text, i, std::string::npos);
  return out;
}

void replace_id(std::optional<error>& e, std::uint64_t from, std::uint64_t to) {
  if (e && from != to) e->message = with_id_replaced(e->message, from, to);
}

}  // namespace dsrt::actors
