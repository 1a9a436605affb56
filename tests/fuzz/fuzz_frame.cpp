// libFuzzer target: decode_frame() on arbitrary bytes (header, checksum, segment table,
// Cap'n Proto reader construction), once as they came and once with a correct checksum
// written in, as a hostile peer would send them (mutated bytes almost never keep a valid
// checksum, so without that the checks behind it would go unfuzzed). Each time both ways:
// from a copy and taking the bytes over (read in place, as the transport does), which must
// agree; a decoded message is traversed whole. Any crash, sanitizer report, disagreement or
// an error code other than corrupt_data is a finding.
#include <capnp/any.h>
#include <kj/exception.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <vector>

#include "transport/frame.h"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "decode_frame: %s\n", what);
  std::abort();
}

void check(const std::vector<std::byte>& bytes) {
  using namespace dsrt::transport;
  auto copied = decode_frame(std::span<const std::byte>(bytes), {});
  auto taken = decode_frame(frame_bytes(bytes), {});
  for (auto* frame : {&copied, &taken}) {
    if (frame->ok()) {
      try {
        (void)(*frame)->root<capnp::AnyPointer>().targetSize();   // reads every word it reaches
      } catch (const kj::Exception&) {
        // a malformed pointer or a limit: what readers of a frame catch
      }
    } else if (frame->err().code != dsrt::error_code::corrupt_data) {
      finding(("unexpected " + frame->err().to_string()).c_str());
    }
  }
  if (copied.ok() != taken.ok()) finding("a copy and the bytes taken over decode differently");
  if (copied.ok() && (copied->type() != taken->type() || copied->payload_bytes() != taken->payload_bytes()))
    finding("a copy and the bytes taken over give different frames");
  if (!copied.ok() && copied.err().message != taken.err().message)
    finding("a copy and the bytes taken over fail differently");
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
