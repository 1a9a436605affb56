#pragma once
// dsnode's files for operators: markers (ready, drained) and the node's metrics, each
// replaced whole (written to PATH.tmp, then renamed), so a reader never sees half a file --
// as Prometheus's node_exporter textfile collector expects of a *.prom file.
#include <chrono>
#include <string>
#include <string_view>

#include "runtime/error.h"

namespace dsrt::apps {

// Replaces the file at `path` with `text`. Errors: unavailable naming the path and why.
status replace_file(const std::string& path, std::string_view text);

// Writes a node's metrics to `path` every `interval` (no file when path is empty). A failed
// write is logged once until a write succeeds again; the node goes on serving.
class metrics_file {
 public:
  metrics_file(std::string path, std::chrono::milliseconds interval) : path_(std::move(path)), interval_(interval) {}
  // Writes text() when the interval has passed since the last write, or at once when `now`.
  template <class Text>
  void write_when_due(Text&& text, bool now = false) {
    if (path_.empty()) return;
    const auto t = std::chrono::steady_clock::now();
    if (!now && t < next_) return;
    next_ = t + interval_;
    report(replace_file(path_, text()));
  }

 private:
  void report(const status& written);
  std::string path_;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point next_{};
  bool failing_ = false;
};

}  // namespace dsrt::apps
