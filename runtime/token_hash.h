#pragma once
// A fast 64-bit hash of a token sequence, for hash tables and rendezvous choices (the
// response cache's keys, the router's prefix affinity). Not for anything adversarial: a
// hash table that uses it compares whole keys on a match.
//
// One splitmix64 step per token is a chain of dependent multiplications (about 15 cycles
// a token): the router hashed every prompt that way, twice, and it was a visible part of
// its time. Here four independent lanes each take two tokens per 64-bit word, so the
// steps overlap and there are half as many, and a word costs one multiply (xor it in,
// multiply by an odd constant — a bijection of the lane — and rotate, so the next multiply
// spreads the high bits too); every lane and the length then go through splitmix64's full
// finalizer, so the result is well mixed in every bit (hash tables take its low bits).
// Pure integer arithmetic: the same value on every platform (the simulator's traces
// depend on it through the replica choice).
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/random.h"

namespace dsrt {

namespace token_hash_detail {
// The finalizer: splitmix64 of state ^ word.
inline std::uint64_t mix(std::uint64_t state, std::uint64_t word) {
  std::uint64_t s = state ^ word;
  return splitmix64(s);
}
// A lane's step per word.
inline std::uint64_t absorb(std::uint64_t lane, std::uint64_t word) {
  const std::uint64_t x = (lane ^ word) * 0x9fb21c651e98df25ull;
  return x << 31 | x >> 33;
}
inline std::uint64_t pair(const std::int32_t* t) {
  return std::uint64_t(std::uint32_t(t[0])) | std::uint64_t(std::uint32_t(t[1])) << 32;
}
}  // namespace token_hash_detail

inline std::uint64_t hash_tokens(std::span<const std::int32_t> tokens, std::uint64_t seed) {
  using token_hash_detail::absorb;
  using token_hash_detail::mix;
  using token_hash_detail::pair;
  std::uint64_t lane[4] = {seed, seed ^ 0x6a09e667f3bcc909ull, seed ^ 0xbb67ae8584caa73bull,
                           seed ^ 0x3c6ef372fe94f82bull};
  const std::int32_t* t = tokens.data();
  const std::size_t n = tokens.size();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 4; ++l) lane[l] = absorb(lane[l], pair(t + i + 2 * std::size_t(l)));
  for (; i + 2 <= n; i += 2) lane[0] = absorb(lane[0], pair(t + i));
  if (i < n) lane[1] = absorb(lane[1], std::uint64_t(std::uint32_t(t[i])));
  std::uint64_t h = mix(seed, n);   // so [1, 2] and [1, 2, 0] hash apart
  for (std::uint64_t l : lane) h = mix(h, l);
  return h;
}

}  // namespace dsrt
