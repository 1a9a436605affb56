// Faults against the in-process runtime: a shard killed mid-stream, a replica whose steps
// fail (its breaker opens, traffic moves, it closes again through half-open), load beyond
// the admission limits (OVERLOADED at once, accepted requests complete), and the fallback
// chain when no replica can serve (response cache, then UNAVAILABLE).
#include <gtest/gtest.h>

#include <cstdio>
#include <future>
#include <thread>

#include "tests/actors/runtime_test_util.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::actors {
namespace {

using engine::test_util::make_prompt;

TEST(Faults, AShardKilledMidStreamFinishesItsRequestsOnTheOtherReplica) {
  auto t = test::start_tiny(test::test_options(2), test::small_cache());
  ASSERT_TRUE(t.runtime);
  for (int i = 0; i < 2; ++i) t.runtime->faults(i).slow_step_ms = 5;   // long enough to kill mid-stream
  client c(*t.runtime);
  test::collector col;
  std::vector<std::vector<std::int32_t>> outputs_alone;
  const int n = 16;
  for (int i = 0; i < n; ++i) {
    client_request r;
    r.prompt_tokens = make_prompt(std::size_t(10 + i), std::uint64_t(100 + i));
    r.max_tokens = 40;
    ASSERT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok());
  }
  // Kill replica 0's shard once some streams are under way.
  ASSERT_TRUE(col.wait_chunks(20, std::chrono::seconds(60)));
  t.runtime->kill_shard(0);
  ASSERT_TRUE(col.wait_finals(n, std::chrono::seconds(120)));
  col.expect_contract();
  auto router = t.runtime->router_status();
  ASSERT_TRUE(router.ok());
  EXPECT_GT(router->resumptions + router->retries, 0) << "nothing ran on the killed replica";
  for (const auto& [k, r] : col.records()) {
    ASSERT_FALSE(r.final.failure) << "request " << k << ": " << r.final.failure->to_string();
    EXPECT_TRUE(r.final.tokens.size() == 40u || r.final.reason == finish_reason::stop) << "request " << k;
  }
  // Greedy outputs do not depend on where they ran: compare with a fault-free runtime.
  auto clean = test::start_tiny(test::test_options(1), test::small_cache());
  ASSERT_TRUE(clean.runtime);
  client cc(*clean.runtime);
  for (const auto& [k, r] : col.records()) {
    client_request req;
    req.prompt_tokens = make_prompt(std::size_t(10 + k), std::uint64_t(100 + k));
    req.max_tokens = 40;
    EXPECT_EQ(cc.generate(req).tokens, r.final.tokens) << "request " << k << " changed across resumption";
  }
  auto sup = t.runtime->supervisor_status();
  ASSERT_TRUE(sup.ok());
  EXPECT_EQ(sup->restarts[0], 1) << "the supervisor restarts the killed replica";
}

TEST(Faults, FailingStepsOpenTheBreakerAndItClosesThroughHalfOpen) {
  auto options = test::test_options(2);
  options.router.policy.breaker.window_requests_min = 4;
  options.router.policy.breaker.window_ms = milliseconds(2000);
  options.router.policy.breaker.window_buckets = 10;
  options.router.policy.breaker.open_ms = milliseconds(300);
  options.router.policy.breaker.half_open_probes_max = 2;
  options.router.policy.choice.affinity_prefix_tokens = 0;   // least loaded: replica 0 gets traffic
  auto t = test::start_tiny(options, test::small_cache());
  ASSERT_TRUE(t.runtime);
  t.runtime->faults(0).fail_steps = true;
  client c(*t.runtime);
  auto run_batch = [&](int first, int count) {
    test::collector col;
    for (int i = first; i < first + count; ++i) {
      client_request r;
      r.prompt_tokens = make_prompt(8, std::uint64_t(i));
      r.max_tokens = 4;
      EXPECT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok());
    }
    EXPECT_TRUE(col.wait_finals(count, std::chrono::seconds(60)));
    col.expect_contract();
    for (const auto& [k, r] : col.records())
      EXPECT_FALSE(r.final.failure) << "request " << k << " should have moved to replica 1";
  };
  for (int round = 0; round < 6; ++round) run_batch(round * 4, 4);
  auto router = t.runtime->router_status();
  ASSERT_TRUE(router.ok());
  EXPECT_GE(router->breaker_opens[0], 1u) << "replica 0's breaker never opened";
  EXPECT_EQ(router->breaker_opens[1], 0u);
  EXPECT_GT(router->retries, 0);
  // Heal replica 0: after open_ms the breaker half-opens, the probes succeed, it closes. The
  // runtime runs on the real clock here, so time has to pass (each round waits a little and
  // sends a batch; nothing asserts how long it took — the virtual-time version of this is
  // Coordinator.ACancelledHalfOpenProbeDoesNotWedgeTheBreaker and test_policy's breaker tests).
  t.runtime->faults(0).fail_steps = false;
  bool closed = false;
  for (int round = 0; round < 100 && !closed; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    run_batch(1000 + round * 2, 2);
    router = t.runtime->router_status();
    ASSERT_TRUE(router.ok());
    closed = router->breaker_states[0] == int(policy::breaker_state::closed);
  }
  EXPECT_TRUE(closed) << "replica 0's breaker did not close after it healed";
}

TEST(Faults, LoadBeyondTheLimitsIsOverloadedAtOnceWhileAcceptedRequestsComplete) {
  auto options = test::test_options(1);
  options.router.policy.admission.queue_requests_max = 8;
  options.router.policy.admission.tenant_queue_requests_max = 8;
  auto t = test::start_tiny(options, test::small_cache());
  ASSERT_TRUE(t.runtime);
  t.runtime->faults(0).slow_step_ms = 2;
  client c(*t.runtime);
  test::collector col;
  const int n = 40;
  for (int i = 0; i < n; ++i) {
    client_request r;
    r.prompt_tokens = make_prompt(8, std::uint64_t(i));
    r.max_tokens = 16;
    ASSERT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok());
  }
  ASSERT_TRUE(col.wait_finals(n, std::chrono::seconds(120)));
  col.expect_contract();
  int overloaded = 0, completed = 0;
  for (const auto& [k, r] : col.records()) {
    if (!r.final.failure) {
      ++completed;
      EXPECT_TRUE(r.final.tokens.size() == 16u || r.final.reason == finish_reason::stop) << "request " << k;
      continue;
    }
    EXPECT_EQ(r.final.failure->code, error_code::overloaded) << "request " << k;
    EXPECT_GT(r.final.retry_after_ms, 0u) << "request " << k;
    EXPECT_TRUE(r.sequences.empty()) << "a rejected request got tokens";
    ++overloaded;
  }
  EXPECT_GE(completed, 8);
  EXPECT_GT(overloaded, 0);
  EXPECT_EQ(completed + overloaded, n);
  // The metrics count every final by outcome, rejections included.
  const std::string text = t.runtime->metrics().prometheus_text();
  EXPECT_NE(text.find(fmt::format("dsrt_requests_total{{outcome=\"OVERLOADED\"}} {}", overloaded)), std::string::npos) << text;
  EXPECT_NE(text.find(fmt::format("dsrt_requests_total{{outcome=\"completed\"}} {}", completed)), std::string::npos) << text;
}

// Requests that fit the model's positions but not a replica's KV cache (the router here
// knows positions only, as a cluster head does): each is INVALID_ARGUMENT, not retried as a
// replica fault, and no breaker opens, so requests that fit are still served.
TEST(Faults, ARequestLargerThanTheKvCacheIsInvalidAndOpensNoBreaker) {
  engine::model_options small_kv;
  small_kv.kv_cache_bytes_max = 256 << 10;
  auto t = test::start_tiny(test::test_options(2), small_kv);
  ASSERT_TRUE(t.runtime);
  const std::int64_t kv_tokens = std::int64_t(t.models[0]->kv_blocks()) * t.models[0]->kv_block_tokens();
  ASSERT_LT(kv_tokens + 110, t.models[0]->config().max_position_embeddings) << "the cache must be the smaller limit";
  client c(*t.runtime);
  test::collector col;
  const int n = 30;
  for (int i = 0; i < n; ++i) {
    client_request r;
    r.prompt_tokens = make_prompt(10, std::uint64_t(i));
    r.max_tokens = std::int32_t(kv_tokens + 100);
    ASSERT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok());
  }
  ASSERT_TRUE(col.wait_finals(n, std::chrono::seconds(120)));
  for (const auto& [k, r] : col.records()) {
    ASSERT_TRUE(r.final.failure) << "request " << k << " cannot fit";
    EXPECT_EQ(r.final.failure->code, error_code::invalid_argument) << r.final.failure->to_string();
  }
  auto st = t.runtime->router_status();
  ASSERT_TRUE(st.ok());
  for (const auto opens : st->breaker_opens) EXPECT_EQ(opens, 0u) << "a request's size opened a breaker";
  EXPECT_EQ(st->retries, 0) << "a request's size is not a replica fault to retry";
  client_request fits;
  fits.prompt_tokens = make_prompt(5, 99);
  fits.max_tokens = 8;
  const auto f = c.generate(fits);
  EXPECT_FALSE(f.failure) << f.failure->to_string();
}

// A cancel right after submit() reaches the router after the request (it goes through the
// request's own actor): every request ends CANCELLED, none runs on unasked.
TEST(Faults, ACancelRightAfterSubmitIsNeverLost) {
  auto t = test::start_tiny(test::test_options(2), test::small_cache());
  ASSERT_TRUE(t.runtime);
  for (int i = 0; i < 2; ++i) t.runtime->faults(i).slow_step_ms = 20;   // no step ends before the cancel
  client c(*t.runtime);
  test::collector col;
  const int n = 20;
  for (int i = 0; i < n; ++i) {
    client_request r;
    r.prompt_tokens = make_prompt(6, std::uint64_t(300 + i));
    r.max_tokens = 64;
    auto id = c.submit(r, col.on_chunk(i), col.on_final(i));
    ASSERT_TRUE(id.ok());
    c.cancel(*id);
  }
  ASSERT_TRUE(col.wait_finals(n, std::chrono::seconds(120)));
  col.expect_contract();
  for (const auto& [k, r] : col.records()) {
    ASSERT_TRUE(r.final.failure) << "request " << k << " ran although cancelled at once";
    EXPECT_EQ(r.final.failure->code, error_code::cancelled) << "request " << k << ": " << r.final.failure->to_string();
  }
}

// Timeouts: negative is INVALID_ARGUMENT; milliseconds::max() (no deadline in all but name)
// is no deadline, not an overflow into the past.
TEST(Faults, ClientTimeoutsAreCheckedAndTheLargestMeansNone) {
  auto t = test::start_tiny(test::test_options(1), test::small_cache());
  ASSERT_TRUE(t.runtime);
  client c(*t.runtime);
  client_request r;
  r.prompt_tokens = make_prompt(5, 7);
  r.max_tokens = 4;
  r.timeout = std::chrono::milliseconds(-5);
  auto f = c.generate(r);
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::invalid_argument) << f.failure->to_string();
  r.timeout = std::chrono::milliseconds::max();
  f = c.generate(r);
  EXPECT_FALSE(f.failure) << f.failure->to_string();
}

TEST(Faults, WhenNoReplicaCanServeTheResponseCacheAnswersThenUnavailable) {
  auto options = test::test_options(1);
  options.router.policy.request_attempts_max = 2;
  auto t = test::start_tiny(options, test::small_cache());
  ASSERT_TRUE(t.runtime);
  client c(*t.runtime);
  client_request greedy;
  greedy.prompt_tokens = make_prompt(12, 77);
  greedy.max_tokens = 8;
  const auto healthy = c.generate(greedy);
  ASSERT_FALSE(healthy.failure);

  t.runtime->faults(0).fail_steps = true;
  // The same deterministic request: its attempt fails, no other replica exists, the
  // response cache has the answer.
  const auto cached = c.generate(greedy);
  ASSERT_FALSE(cached.failure) << cached.failure->to_string();
  EXPECT_EQ(cached.tokens, healthy.tokens);
  EXPECT_EQ(cached.text, healthy.text);
  // Another prompt, or a sampled request, has no cached answer: a clear UNAVAILABLE.
  client_request other = greedy;
  other.prompt_tokens = make_prompt(12, 78);
  const auto missed = c.generate(other);
  ASSERT_TRUE(missed.failure);
  EXPECT_EQ(missed.failure->code, error_code::unavailable);
  EXPECT_GT(missed.retry_after_ms, 0u);
  client_request sampled = greedy;
  sampled.sampling = {.temperature = 0.8f, .seed = 3};
  const auto refused = c.generate(sampled);
  ASSERT_TRUE(refused.failure);
  EXPECT_EQ(refused.failure->code, error_code::unavailable);
  auto router = t.runtime->router_status();
  ASSERT_TRUE(router.ok());
  EXPECT_EQ(router->response_cache_hits, 1);
  EXPECT_EQ(router->fallbacks, 3);
}

// Runs fn; if it has not returned within `limit`, ends the process with a message (a hang
// fails the test at once, not at ctest's timeout).
template <class F>
void returns_within(std::chrono::seconds limit, const char* what, F fn) {
  std::promise<void> done;
  std::thread guard([f = done.get_future(), limit, what]() {
    if (f.wait_for(limit) == std::future_status::timeout) {
      std::fprintf(stderr, "%s did not return within %lld s\n", what, static_cast<long long>(limit.count()));
      std::abort();
    }
  });
  fn();
  done.set_value();
  guard.join();
}

// Stopping a node right after one of its shards was killed (dsnode on SIGTERM after a
// fault, a test's teardown): the runtime ends, whether the restart has happened yet or not.
TEST(Faults, ARuntimeStopsRightAfterAShardKill) {
  for (int round = 0; round < 10; ++round) {
    auto t = test::start_tiny(test::test_options(2), test::small_cache());
    ASSERT_TRUE(t.runtime);
    client c(*t.runtime);
    test::collector col;
    const int n = round % 2 == 0 ? 0 : 4;   // with steps under way in odd rounds
    for (int i = 0; i < n; ++i) {
      client_request r;
      r.prompt_tokens = make_prompt(8, std::uint64_t(i));
      r.max_tokens = 64;
      ASSERT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok());
    }
    if (n > 0) {
      ASSERT_TRUE(col.wait_chunks(n, std::chrono::seconds(60)));
    }
    t.runtime->kill_shard(round % 3 == 0 ? 0 : 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(round * round));
    // Hangs if a shard, or the pair restarted after the kill, lives on.
    returns_within(std::chrono::seconds(60), "stopping the runtime", [&] { t.runtime.reset(); });
    ASSERT_TRUE(col.wait_finals(n, std::chrono::seconds(60))) << "round " << round;
    col.expect_contract();
  }
}

}  // namespace
}  // namespace dsrt::actors
