// libFuzzer target: decode_frame() on arbitrary bytes (header, checksum, segment table,
// Cap'n Proto reader construction), once as they came and once with a correct checksum
// written in, as a hostile peer would send them (mutated bytes almost never keep a valid
// checksum, so without that the checks behind it would go unfuzzed). Any crash, sanitizer
// report or an error code other than corrupt_data is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <vector>

#include "transport/frame.h"

namespace {

void check(std::span<const std::byte> bytes) {
  using namespace dsrt::transport;
  auto frame = decode_frame(bytes, {});
  if (!frame.ok() && frame.err().code != dsrt::error_code::corrupt_data) {
    std::fprintf(stderr, "decode_frame: unexpected %s\n", frame.err().to_string().c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dsrt::transport;
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
  check(bytes);
  if (bytes.size() >= frame_header_bytes) {
    seal_frame(bytes);
    check(bytes);
  }
  return 0;
}
