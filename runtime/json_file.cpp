#include "runtime/json_file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace dsrt {

result<nlohmann::json> read_json_file(const std::filesystem::path& path, std::uint64_t bytes_max) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return make_error(error_code::not_found, "{}: {}", path.string(), ec.message());
  if (size > bytes_max) {
    return make_error(error_code::corrupt_data, "{}: {} bytes is larger than the {} byte limit",
                      path.string(), size, bytes_max);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(error_code::not_found, "{}: cannot open", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json(text.str(), path.string());
}

namespace {

// The deepest nesting of arrays and objects in `text` (brackets inside strings not counted).
std::size_t json_depth(std::string_view text) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

result<nlohmann::json> parse_json(std::string_view text, std::string_view source) {
  if (const auto depth = json_depth(text); depth > json_depth_max)
    return make_error(error_code::corrupt_data, "{}: JSON nested {} deep, more than the limit of {}", source, depth,
                      json_depth_max);
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(error_code::corrupt_data, "{}: not valid JSON", source);
  return j;
}

}  // namespace dsrt
