// kernels/cuda_backend.h in a build without the CUDA toolkit: every question gets the same
// answer, so callers need no #ifdef.
#include "kernels/cuda_backend.h"

namespace dsrt::kernels {
namespace {
constexpr const char* not_built = "this build of dsrt has no CUDA backend (no CUDA toolkit at build time; "
                                  "rebuild with the toolkit installed or -DDSRT_CUDA=ON)";
}

bool cuda_compiled() { return false; }

int cuda_device_count(std::string* why) {
  if (why) *why = not_built;
  return -1;
}

std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options&, std::string* why) {
  if (why) *why = not_built;
  return nullptr;
}

}  // namespace dsrt::kernels
