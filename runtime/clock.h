#pragma once
// Time as policies see it. Policies never read a clock: the caller hands them `now` — an
// actor reads std::chrono::steady_clock (or CAF's clock, which is the test coordinator's
// virtual clock in actor tests), the simulator passes its virtual time. Durations in
// configuration are std::chrono::milliseconds with the unit in the field name.
#include <chrono>

namespace dsrt {

using clock_time = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

}  // namespace dsrt
