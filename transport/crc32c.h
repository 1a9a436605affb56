#pragma once
// CRC-32C (Castagnoli), the checksum every frame carries (frame.h) so that bytes damaged
// between two processes — a flipped bit in a NIC, a driver or memory — are a refused frame
// and a closed connection instead of a wrong token delivered as if it were right. It is
// not a defence against a hostile peer (any peer can compute it); authentication is.
// Uses the SSE4.2 instruction where the CPU has it, a table otherwise.
#include <cstddef>
#include <cstdint>
#include <span>

namespace dsrt::transport {

// Extends `crc` (0 to start) over `bytes`. crc32c("123456789") == 0xe3069283.
std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc = 0);

}  // namespace dsrt::transport
