#include "kernels/assert.h"

#include <cstdio>
#include <cstdlib>

namespace dsrt::detail {
void assert_fail(const char* expr, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "dsrt: assertion failed: %s at %s:%d%s%s\n", expr, file, line,
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace dsrt::detail
