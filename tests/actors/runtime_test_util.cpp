#include "tests/actors/runtime_test_util.h"

#include <gtest/gtest.h>

#include "runtime/serving/step_executor.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::actors::test {

engine::model_options small_cache() {
  engine::model_options m;
  m.kv_cache_bytes_max = 32ll << 20;
  return m;
}

runtime_options test_options(std::int32_t replicas) {
  runtime_options o;
  o.replicas = replicas;
  o.supervisor.scheduler.batch_wait_ms = milliseconds(1);
  o.supervisor.watchdog_interval_ms = milliseconds(200);
  o.supervisor.watchdog_stall_ms = milliseconds(5000);
  return o;
}

tiny_runtime start_tiny(runtime_options options, const engine::model_options& model) {
  tiny_runtime t;
  const auto& dir = engine::test_util::tiny_llama_dir();
  std::vector<std::shared_ptr<serving::step_executor>> executors;
  for (int i = 0; i < options.replicas; ++i) {
    t.backends.push_back(engine::test_util::make_backend());
    t.models.push_back(engine::test_util::load_model(dir, *t.backends.back(), model));
    if (!t.models.back()) return t;
    executors.push_back(std::make_shared<serving::model_executor>(*t.models.back()));
  }
  auto tok = std::make_shared<tokenizer::tokenizer>(engine::test_util::load_tokenizer(dir));
  t.eos = tok->eos_ids();
  t.tokenizer = tok;
  const auto& c = t.models.front()->config();
  options.router.policy.vocab_size = c.vocab_size;
  options.router.policy.context_tokens_max = c.max_position_embeddings;
  options.router.policy.stop_token_ids = t.eos;
  auto rt = local_runtime::start(options, std::move(executors), t.tokenizer);
  EXPECT_TRUE(rt.ok()) << (rt.ok() ? "" : rt.err().to_string());
  if (rt) t.runtime = std::move(*rt);
  return t;
}

client::chunk_callback collector::on_chunk(int key) {
  return [this, key](const token_chunk& c) {
    std::lock_guard lock(mutex_);
    auto& r = records_[key];
    if (r.finals > 0) r.chunk_after_final = true;
    r.sequences.push_back(c.sequence);
    r.tokens.insert(r.tokens.end(), c.tokens.begin(), c.tokens.end());
    r.text += c.text;
    ++chunks_;
    cv_.notify_all();
  };
}

bool collector::wait_chunks(std::int64_t count, std::chrono::seconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return chunks_ >= count; });
}

client::final_callback collector::on_final(int key) {
  return [this, key](const final_message& f) {
    {
      std::lock_guard lock(mutex_);
      auto& r = records_[key];
      ++r.finals;
      r.final = f;
      ++finals_;
    }
    cv_.notify_all();
  };
}

bool collector::wait_finals(int count, std::chrono::seconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return finals_ >= count; });
}

std::map<int, stream_record> collector::records() const {
  std::lock_guard lock(mutex_);
  return records_;
}

void collector::expect_contract() const {
  std::lock_guard lock(mutex_);
  for (const auto& [key, r] : records_) {
    EXPECT_EQ(r.finals, 1) << "request " << key;
    EXPECT_FALSE(r.chunk_after_final) << "request " << key;
    for (std::size_t i = 0; i < r.sequences.size(); ++i)
      EXPECT_EQ(r.sequences[i], i) << "request " << key << ": chunk " << i << " out of order, repeated or missing";
    EXPECT_EQ(r.final.chunks_sent, r.sequences.size()) << "request " << key;
    if (!r.final.failure) {
      EXPECT_EQ(r.tokens, r.final.tokens) << "request " << key;
      EXPECT_EQ(r.text, r.final.text) << "request " << key;
    }
  }
}

}  // namespace dsrt::actors::test
