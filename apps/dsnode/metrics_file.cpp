#include "apps/dsnode/metrics_file.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace dsrt::apps {

status replace_file(const std::string& path, std::string_view text) {
  const auto tmp = path + ".tmp";
  const auto failed = [&](const char* what) {
    const int err = errno;
    std::remove(tmp.c_str());
    return make_error(error_code::unavailable, "cannot {} {}: {}", what, tmp, std::strerror(err));
  };
  std::FILE* out = std::fopen(tmp.c_str(), "w");
  if (!out) return failed("create");
  const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size() && std::fflush(out) == 0;
  // Checked too: on network filesystems a full disk or quota may show only at close.
  if (std::fclose(out) != 0 || !written) return failed("write");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return failed("rename");
  return ok_t{};
}

void metrics_file::report(const status& written) {
  if (written) {
    if (std::exchange(failing_, false)) spdlog::info("dsnode: metrics written to {} again", path_);
  } else if (!std::exchange(failing_, true)) {
    spdlog::warn("dsnode: metrics not written ({}); retrying every {} ms", written.err().to_string(),
                 interval_.count());
  }
}

}  // namespace dsrt::apps
