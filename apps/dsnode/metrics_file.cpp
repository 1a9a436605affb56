#include "apps/dsnode/metrics_file.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace dsrt::apps {

status replace_file(const std::string& path, std::string_view text) {
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return make_error(error_code::unavailable, "cannot write {}", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(error_code::unavailable, "cannot rename {} to {}: {}", tmp, path, std::strerror(errno));
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
