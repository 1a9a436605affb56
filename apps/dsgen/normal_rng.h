#pragma once
// Seeded normal random numbers whose bits are the same on every platform and standard
// library: xoshiro256** seeded through splitmix64, and Box-Muller with log / sin / cos
// written here from +, *, / and sqrt only (all correctly rounded in IEEE 754).
// std::normal_distribution and libm's log/cos differ between libraries, so they would
// break "same preset and seed -> byte-identical files".
#include <cmath>
#include <cstdint>
#include <string_view>

#include "runtime/random.h"

namespace dsrt::dsgen {

using dsrt::splitmix64;
using dsrt::xoshiro256;

// FNV-1a, to turn a tensor name into part of a seed.
inline std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Mixes several words into one seed; order matters.
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  std::uint64_t s = a;
  std::uint64_t h = splitmix64(s);
  s = h ^ b;
  h = splitmix64(s);
  s = h ^ c;
  return splitmix64(s);
}

// ln(x) for x > 0. frexp is exact; the rest is the atanh series on [sqrt(1/2), sqrt(2)),
// where |s| <= 0.172, accurate to ~1e-11 relative: far below the f32 rounding that follows.
inline double portable_log(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m *= 2;
    --e;
  }
  const double s = (m - 1) / (m + 1);
  const double s2 = s * s;
  // 1/k for odd k, highest first; constants so the loop has no division.
  static constexpr double inverse_odd[] = {1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0};
  double series = 0;
  for (double c : inverse_odd) series = c + s2 * series;
  return e * 0.69314718055994530942 + 2 * s * series;
}

// sin and cos of 2*pi*turns for turns in [0, 1): reduction to the nearest quadrant, then
// Taylor series on [-pi/4, pi/4] (error below 1e-13).
inline void portable_sincos_turns(double turns, double& sin_out, double& cos_out) {
  const double quarter = turns * 4;
  const int quadrant = int(quarter + 0.5);  // 0..4, 4 is a full turn
  const double x = (quarter - quadrant) * 1.57079632679489661923;
  const double x2 = x * x;
  // sin x = x (1 - x^2/(2*3) (1 - x^2/(4*5) (...))), likewise cos; the 1/((k-1)k) are
  // constants so the loops have no division.
  static constexpr double sin_terms[] = {1.0 / (12 * 13), 1.0 / (10 * 11), 1.0 / (8 * 9),
                                         1.0 / (6 * 7),   1.0 / (4 * 5),   1.0 / (2 * 3)};
  static constexpr double cos_terms[] = {1.0 / (13 * 14), 1.0 / (11 * 12), 1.0 / (9 * 10),
                                         1.0 / (7 * 8),   1.0 / (5 * 6),   1.0 / (3 * 4),
                                         1.0 / (1 * 2)};
  double s = 0, c = 0;
  for (double t : sin_terms) s = x2 * t * (1 - s);
  s = x * (1 - s);
  for (double t : cos_terms) c = x2 * t * (1 - c);
  c = 1 - c;
  switch (quadrant & 3) {
    case 0: sin_out = s; cos_out = c; break;
    case 1: sin_out = c; cos_out = -s; break;
    case 2: sin_out = -s; cos_out = -c; break;
    default: sin_out = -c; cos_out = s; break;
  }
}

// Fills out[0..n) with normal(0, stddev) from a generator seeded with `seed`.
inline void fill_normal(std::uint64_t seed, float stddev, float* out, std::size_t n) {
  xoshiro256 rng(seed);
  constexpr double two_pow_minus_53 = 1.0 / 9007199254740992.0;
  for (std::size_t i = 0; i < n; i += 2) {
    const double u1 = double((rng.next() >> 11) + 1) * two_pow_minus_53;  // (0, 1]
    const double u2 = double(rng.next() >> 11) * two_pow_minus_53;        // [0, 1)
    const double r = std::sqrt(-2 * portable_log(u1));
    double s = 0, c = 0;
    portable_sincos_turns(u2, s, c);
    out[i] = float(stddev * r * c);
    if (i + 1 < n) out[i + 1] = float(stddev * r * s);
  }
}

}  // namespace dsrt::dsgen
