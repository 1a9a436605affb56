// libFuzzer target: decode_frame() and then every decode_*() of transport/wire.h on the
// result, whatever the frame's type — every schema reader over hostile bytes. The frame's
// type comes from the input, so mutations of the seed frames reach each reader's fields.
// Any crash, sanitizer report or an error code other than invalid_argument / corrupt_data
// is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>
#include <cstdio>
#include <cstdlib>

#include "tests/transport/wire_samples.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dsrt::transport;
  // Smaller limits than production so the fuzzer reaches them with short inputs.
  frame_limits limits;
  limits.traversal_words_max = 1u << 16;
  limits.segments_max = 64;
  // With a correct checksum, as a hostile peer sends it (fuzz_frame covers the checksum).
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
  if (bytes.size() >= frame_header_bytes) seal_frame(bytes);
  auto frame = decode_frame(bytes, limits);
  if (!frame.ok()) return 0;   // fuzz_frame checks decode_frame's own errors
  static const clock_anchor now = clock_anchor::now();   // fixed: runs replay exactly
  const std::string bad = testing::decode_every(*frame, now);
  if (!bad.empty()) {
    std::fprintf(stderr, "unexpected decode outcome: %s\n", bad.c_str());
    std::abort();
  }
  return 0;
}
