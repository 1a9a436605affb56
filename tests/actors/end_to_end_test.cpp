// The runtime end to end in one process: two replicas of tiny-llama serve 200 concurrent
// requests of mixed lengths and priorities; every output equals the same request run alone
// through the engine's generator, every stream keeps the contract, no KV block leaks; a
// shared prompt prefix is computed once.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/engine/generator.h"
#include "tests/actors/runtime_test_util.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::actors {
namespace {

using engine::test_util::make_prompt;

// What the engine's generator produces for one request alone.
engine::generation_output run_alone(const client_request& r, const std::vector<std::int32_t>& eos) {
  auto backend = engine::test_util::make_backend();
  auto model = engine::test_util::load_model(engine::test_util::tiny_llama_dir(), *backend, test::small_cache());
  auto tok = engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir());
  engine::generator g(*model, tok);
  engine::generation_request req;
  req.prompt = r.prompt_tokens;
  req.sampling = r.sampling;
  req.max_tokens = r.max_tokens;
  req.stop_token_ids = eos;
  req.stop_strings = r.stop;
  auto out = g.run(std::span(&req, 1));
  EXPECT_TRUE(out.ok());
  return out.ok() ? (*out)[0] : engine::generation_output{};
}

TEST(EndToEnd, TwoReplicasServe200MixedRequestsExactlyAsAlone) {
  auto t = test::start_tiny(test::test_options(2), test::small_cache());
  ASSERT_TRUE(t.runtime);
  client c(*t.runtime);
  test::collector col;
  std::vector<client_request> requests;
  for (int i = 0; i < 200; ++i) {
    client_request r;
    r.prompt_tokens = make_prompt(std::size_t(3 + (i * 37) % 90), std::uint64_t(i));
    r.max_tokens = 1 + (i * 13) % 24;
    r.priority = i % 4;
    r.tenant = "tenant-" + std::to_string(i % 3);
    if (i % 3 == 1) r.sampling = {.temperature = 0.8f, .top_k = 40, .seed = std::uint64_t(i)};
    if (i % 10 == 7) r.stop = {"e"};
    requests.push_back(r);
    auto id = c.submit(r, col.on_chunk(i), col.on_final(i));
    ASSERT_TRUE(id.ok()) << "request " << i;
  }
  ASSERT_TRUE(col.wait_finals(200, std::chrono::seconds(300))) << "not every request got a final";
  col.expect_contract();
  const auto records = col.records();
  ASSERT_EQ(records.size(), 200u);
  // The alone runs: a handful of requests of every kind (all 200 would only repeat them).
  for (int i = 0; i < 200; ++i) {
    const auto& f = records.at(i).final;
    ASSERT_FALSE(f.failure) << "request " << i << ": " << f.failure->to_string();
    if (i % 7 != 0 && i % 10 != 7) continue;
    const auto alone = run_alone(requests[std::size_t(i)], t.eos);
    EXPECT_EQ(f.tokens, alone.tokens) << "request " << i;
    EXPECT_EQ(f.text, alone.text) << "request " << i;
    EXPECT_EQ(f.reason == finish_reason::stop, alone.reason == engine::finish_reason::stop) << "request " << i;
  }
  auto statuses = t.runtime->replica_statuses();
  ASSERT_TRUE(statuses.ok());
  ASSERT_EQ(statuses->size(), 2u);
  for (const auto& s : *statuses) {
    EXPECT_EQ(s.leaked_blocks, 0) << "replica " << s.replica;
    EXPECT_FALSE(s.has_work) << "replica " << s.replica;
    EXPECT_GT(s.steps, 0u) << "replica " << s.replica << " never ran: no load balancing";
  }
  auto router = t.runtime->router_status();
  ASSERT_TRUE(router.ok());
  EXPECT_EQ(router->accepted, 200);
  EXPECT_EQ(router->completed, 200);
  // The metrics registry saw the same.
  const auto m = t.runtime->metrics().to_json();
  EXPECT_EQ(m["dsrt_requests_total"]["series"][0]["value"], 200) << m["dsrt_requests_total"].dump();
  int with_tokens = 0;
  for (const auto& [k, r] : records) with_tokens += !r.tokens.empty();
  EXPECT_EQ(m["dsrt_ttft_seconds"]["series"][0]["count"], with_tokens) << "one TTFT per stream with a token";
  EXPECT_EQ(m["dsrt_batch_sequences"]["series"].size(), 2u) << "one series per replica";
  EXPECT_EQ(m["dsrt_replicas_up"]["series"][0]["value"], 2) << m["dsrt_replicas_up"].dump();
  EXPECT_EQ(m["dsrt_requests_in_flight"]["series"][0]["value"], 0) << m["dsrt_requests_in_flight"].dump();
  EXPECT_NE(t.runtime->metrics().prometheus_text().find("dsrt_kv_used_ratio{replica=\"1\"}"), std::string::npos);
}

TEST(EndToEnd, ASharedPrefixIsComputedOnceAndGivesTheSameOutput) {
  auto t = test::start_tiny(test::test_options(1), test::small_cache());
  ASSERT_TRUE(t.runtime);
  client c(*t.runtime);
  client_request first;
  first.prompt_tokens = make_prompt(200, 5);
  first.max_tokens = 8;
  ASSERT_FALSE(c.generate(first).failure);
  auto before = t.runtime->replica_statuses();
  ASSERT_TRUE(before.ok());
  client_request second = first;
  second.prompt_tokens.resize(180);
  for (int i = 0; i < 20; ++i) second.prompt_tokens.push_back(100 + i);
  const auto f = c.generate(second);
  ASSERT_FALSE(f.failure);
  auto after = t.runtime->replica_statuses();
  ASSERT_TRUE(after.ok());
  const auto hit = (*after)[0].prefix_hit_tokens - (*before)[0].prefix_hit_tokens;
  const auto computed = (*after)[0].computed_tokens - (*before)[0].computed_tokens;
  EXPECT_EQ(hit, 176) << "eleven full blocks of 16 of the shared 180 tokens";
  EXPECT_EQ(computed, 200 - 176 + 7) << "the rest of the prompt and the fed-back tokens";
  const auto alone = run_alone(second, t.eos);
  EXPECT_EQ(f.tokens, alone.tokens);
  EXPECT_EQ(f.text, alone.text);
}

TEST(EndToEnd, BadRequestsGetInvalidArgumentAndNothingElse) {
  auto t = test::start_tiny(test::test_options(1), test::small_cache());
  ASSERT_TRUE(t.runtime);
  client c(*t.runtime);
  client_request r;
  r.prompt_tokens = {1, 2, 1 << 30};
  auto f = c.generate(r);
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::invalid_argument);
  r.prompt_tokens = {1, 2, 3};
  r.max_tokens = 0;
  EXPECT_EQ(c.generate(r).failure->code, error_code::invalid_argument);
  r.max_tokens = 4;
  r.sampling.top_p = 0;
  EXPECT_EQ(c.generate(r).failure->code, error_code::invalid_argument);
  client_request none;
  EXPECT_EQ(c.generate(none).failure->code, error_code::invalid_argument);
  r.sampling.top_p = 1;
  EXPECT_FALSE(c.generate(r).failure) << "the runtime still serves";
}

}  // namespace
}  // namespace dsrt::actors
