#include "transport/crc32c.h"

#include <array>
#include <cstring>

namespace dsrt::transport {
namespace {

constexpr std::uint32_t castagnoli_reflected = 0x82f63b78;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (c & 1 ? castagnoli_reflected : 0);
    t[i] = c;
  }
  return t;
}
constexpr auto table = make_table();

std::uint32_t crc_table(const std::byte* p, std::size_t n, std::uint32_t c) {
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ std::uint32_t(p[i])) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc_sse42(const std::byte* p, std::size_t n, std::uint32_t c) {
  std::uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    c64 = __builtin_ia32_crc32di(c64, word);
  }
  c = std::uint32_t(c64);
  for (; n > 0; --n, ++p) c = __builtin_ia32_crc32qi(c, std::uint8_t(*p));
  return c;
}
const bool have_sse42 = [] {
  __builtin_cpu_init();   // this runs during static initialisation
  return __builtin_cpu_supports("sse4.2") != 0;
}();
#endif

}  // namespace

std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc) {
  std::uint32_t c = ~crc;
#if defined(__x86_64__)
  if (have_sse42) return ~crc_sse42(bytes.data(), bytes.size(), c);
#endif
  return ~crc_table(bytes.data(), bytes.size(), c);
}

}  // namespace dsrt::transport
