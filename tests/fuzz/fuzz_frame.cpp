// libFuzzer target: decode_frame() on arbitrary bytes (header, segment table, Cap'n Proto
// reader construction). Any crash, sanitizer report or an error code other than
// corrupt_data is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>

#include "transport/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dsrt::transport;
  auto frame = decode_frame({reinterpret_cast<const std::byte*>(data), size}, {});
  if (!frame.ok() && frame.err().code != dsrt::error_code::corrupt_data) {
    std::fprintf(stderr, "decode_frame: unexpected %s\n", frame.err().to_string().c_str());
    std::abort();
  }
  return 0;
}
