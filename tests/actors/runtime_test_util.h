#pragma once
// Starting the in-process runtime on tiny-llama for tests, and a collector that checks the
// request contract on every stream: chunks numbered 0, 1, 2, ... without gaps or repeats,
// nothing after the final, exactly one final.
#include <condition_variable>
#include <map>
#include <mutex>

#include "actors/client.h"
#include "actors/local_runtime.h"
#include "kernels/backend.h"
#include "runtime/engine/causal_lm.h"

namespace dsrt::actors::test {

// Two (or `replicas`) models of tiny-llama, each with its own 1-thread CPU backend.
struct tiny_runtime {
  std::vector<std::unique_ptr<kernels::backend>> backends;
  std::vector<std::unique_ptr<engine::causal_lm>> models;
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  std::unique_ptr<local_runtime> runtime;
  std::vector<std::int32_t> eos;
};
// REQUIRES: called inside a test (failures are recorded); runtime is null on failure.
tiny_runtime start_tiny(runtime_options options, const engine::model_options& model = {});
// A 32 MiB KV cache per replica: plenty for tiny-llama, small enough for several replicas.
engine::model_options small_cache();
// Defaults suited to tests: short watchdog and breaker windows are set by the caller.
runtime_options test_options(std::int32_t replicas);

struct stream_record {
  std::vector<std::uint32_t> sequences;     // sequence numbers in arrival order
  std::vector<std::int32_t> tokens;         // from the chunks
  std::string text;
  int finals = 0;
  bool chunk_after_final = false;
  final_message final;
};

class collector {
 public:
  // Callbacks for client::submit that record into the entry of `key`.
  client::chunk_callback on_chunk(int key);
  client::final_callback on_final(int key);
  // Waits until `count` finals arrived or timeout passed; false on timeout.
  bool wait_finals(int count, std::chrono::seconds timeout);
  // Waits until `count` chunks arrived over all requests; false on timeout.
  bool wait_chunks(std::int64_t count, std::chrono::seconds timeout);
  std::map<int, stream_record> records() const;
  // Checks the contract for every record: one final, gap-free ordered chunks, chunk tokens
  // equal the final's tokens and chunk text its text.
  void expect_contract() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<int, stream_record> records_;
  int finals_ = 0;
  std::int64_t chunks_ = 0;
};

}  // namespace dsrt::actors::test
