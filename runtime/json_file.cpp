#include "runtime/json_file.h"

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
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return make_error(error_code::corrupt_data, "{}: not valid JSON", path.string());
  }
  return j;
}

}  // namespace dsrt
