#pragma once
// Fault points that compile into production code and fire only in simulation, after
// FoundationDB's BUGGIFY: `if (DSRT_BUGGIFY("scheduler.preempt")) ...` takes a rare but
// legal path (a smaller step, a preemption, a refusal) so the simulator exercises it often.
//
// Outside a buggify_scope the macro is one load of a thread-local pointer and false: a
// production process never opens a scope. The simulator opens one per run (the actor world,
// on its thread) or one detached scope per simulated process (the policy world); within a
// scope each point is enabled or not once, from the seed and the point's name
// (enable_probability), and an enabled point fires on each evaluation with
// fire_probability, drawn from a generator seeded by the run. A simulated process evaluates
// points in a deterministic order, so the same seed fires the same points. A simulation of
// several processes run by a pool of threads gives each process a detached scope of its own
// (its own stream of draws) and makes it current, with use(), while that process runs.
//
// Thread safety: a scope is current on one thread at a time; attached scopes do not nest
// (use() may: it restores what was current).
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/random.h"

namespace dsrt {

// Every DSRT_BUGGIFY point in the tree, by name (Buggify.EveryPointInTheTreeIsListed
// keeps this list and the sources in step), so a tool can refuse a name that no point has.
inline constexpr std::array<std::string_view, 4> buggify_points = {
    "breaker.spurious_failure", "scheduler.preempt", "scheduler.refuse_submit", "scheduler.small_step"};

struct buggify_config {
  double enable_probability = 0.25;   // a point is on for a whole run with this probability
  double fire_probability = 0.05;     // an enabled point fires per evaluation with this
  std::vector<std::string> only;      // when not empty, no other point is ever enabled
};

class buggify_scope {
 public:
  // A scope current on this thread until it is destroyed.
  buggify_scope(std::uint64_t seed, const buggify_config& config = {});
  // A detached scope: the same points enabled as by `seed`, fire draws from its own
  // `stream`; current only inside use().
  struct detached_t {};
  buggify_scope(std::uint64_t seed, const buggify_config& config, std::uint64_t stream, detached_t);
  ~buggify_scope();
  buggify_scope(const buggify_scope&) = delete;
  buggify_scope& operator=(const buggify_scope&) = delete;

  // Whether `point` fires now (the slow path of DSRT_BUGGIFY).
  bool evaluate(const char* point);
  // Times each enabled point fired in this scope (disabled points are absent).
  const std::map<std::string, std::int64_t>& fired() const { return fired_; }

  static buggify_scope* current() { return current_; }

  // Makes `scope` (a detached one, or null) current on this thread until destroyed, then
  // restores the previous one.
  class use {
   public:
    explicit use(buggify_scope* scope) : previous_(std::exchange(current_, scope)) {}
    ~use() { current_ = previous_; }
    use(const use&) = delete;
    use& operator=(const use&) = delete;

   private:
    buggify_scope* previous_;
  };

 private:
  struct point_state { bool enabled; };
  std::uint64_t seed_;
  buggify_config config_;
  xoshiro256 rng_;
  std::map<std::string, point_state, std::less<>> points_;
  std::map<std::string, std::int64_t> fired_;
  bool attached_ = true;   // current from construction to destruction
  static inline constinit thread_local buggify_scope* current_ = nullptr;
};

}  // namespace dsrt

#define DSRT_BUGGIFY(point) \
  (::dsrt::buggify_scope::current() != nullptr && ::dsrt::buggify_scope::current()->evaluate(point))
