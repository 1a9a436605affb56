#pragma once
// CUDA graphs for repeated steps, without the model's help. The backend records each launch
// (its kind and parameters as key bytes, and a closure that performs it) instead of issuing
// it; every step_graph_launches launches, and before anything that waits for the device, it
// flushes: a sequence of launches equal, byte for byte, to one captured before is replayed as
// that graph (one launch instead of dozens); a sequence seen for the first time runs eagerly,
// and the second time it is seen it is captured into a graph and launched. Decode steps
// repeat their launches exactly (same buffers, same staged metadata offsets, attention split
// into a bucketed number of chunks), so from their third step on they run as graphs; prefill
// steps, whose shapes vary, run eagerly and cost one key comparison.
//
// Segments of step_graph_launches keep the GPU busy while the host records the next one.
//
// No CUDA types here: capturing, launching and destroying a graph are hooks, so this
// bookkeeping is tested with fakes on any machine (tests/kernels/step_graphs_test.cpp).
// Thread safety: none (one caller at a time, as the backend).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <list>
#include <span>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace dsrt::kernels::cuda {

// Launches per recorded segment: the GPU runs one segment's graph while the host records the
// next. The first segment after a wait for the device is shorter, so that the idle GPU
// starts a step after a few launches' worth of host work, not 64.
inline constexpr std::size_t step_graph_launches = 64;
inline constexpr std::size_t step_graph_first_launches = 16;
// Sequences remembered (with or without a graph); the least recently used goes first.
inline constexpr std::size_t step_graphs_max = 256;

// The identity of a launch: scalar values (integers, floats, enums, pointers) appended as
// bytes. Callers add every parameter that the launch reads.
class launch_key {
 public:
  template <class T>
  void add(const T& value) {
    static_assert(std::is_scalar_v<T>, "add the scalar fields of a struct one by one");
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof value);
  }
  template <class... T>
  void add_all(const T&... values) {
    (add(values), ...);
  }
  void clear() { bytes_.clear(); }
  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

class step_recorder {
 public:
  struct hooks {
    // A graph of what run_all launches (stream capture), or nullptr when capture failed: then
    // run_all's launches were not issued and the segment runs eagerly.
    std::function<void*(const std::function<void()>& run_all)> capture;
    std::function<void(void*)> launch;
    std::function<void(void*)> destroy;
  };
  struct counters {
    std::uint64_t graph_launches = 0;    // segments replayed from a graph
    std::uint64_t captures = 0;          // graphs built
    std::uint64_t capture_failures = 0;
    std::uint64_t eager_segments = 0;    // segments issued launch by launch
    std::uint64_t evictions = 0;
  };

  // enabled = false: record() issues at once and nothing is ever captured.
  step_recorder(hooks h, bool enabled, std::size_t graphs_max = step_graphs_max,
                std::size_t segment_launches = step_graph_launches,
                std::size_t first_segment_launches = step_graph_first_launches);
  ~step_recorder();
  step_recorder(const step_recorder&) = delete;
  step_recorder& operator=(const step_recorder&) = delete;

  // Records one launch: key identifies it (see launch_key), run issues it. May flush.
  void record(std::span<const std::byte> key, std::function<void()> run);
  // Issues everything recorded (see the top of the file) and forgets it.
  void flush();
  // The device went idle (its stream was waited for): flush, and make the next segment a
  // first one (first_segment_launches long).
  void idle();
  bool pending() const { return !runs_.empty(); }
  bool enabled() const { return enabled_; }
  const counters& stats() const { return stats_; }
  // Sequences remembered now (captured or seen once).
  std::size_t sequences() const { return entries_.size() - free_slots_.size(); }

 private:
  struct entry {
    std::uint64_t hash = 0;
    std::vector<std::byte> key;
    void* graph = nullptr;           // nullptr: seen once, not captured yet
    bool capture_failed = false;     // then it always runs eagerly
    std::list<std::size_t>::iterator lru;
  };
  void run_eagerly();
  void evict_one();

  hooks hooks_;
  bool enabled_;
  std::size_t graphs_max_;
  std::size_t segment_launches_;
  std::size_t first_segment_launches_;
  bool first_segment_ = true;   // the segment being recorded is the first since idle()
  std::vector<std::byte> key_;                       // this segment's launches, end to end
  std::vector<std::function<void()>> runs_;
  std::unordered_multimap<std::uint64_t, std::size_t> by_hash_;   // key hash -> slot
  std::vector<entry> entries_;                        // slots
  std::vector<std::size_t> free_slots_;
  std::list<std::size_t> lru_;                        // front: most recently used
  counters stats_;
};

}  // namespace dsrt::kernels::cuda
