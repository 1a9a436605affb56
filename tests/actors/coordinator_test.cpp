// The serving actors under CAF's deterministic test coordinator: every event-based actor
// runs on the test's thread when sched.run() says so, and time is virtual (advance_time),
// so a retry, a resumption, a cancel or a batch window is stepped exactly, with no sleeps.
// Probe actors stand in for clients and for batchers (recording what they receive); the
// real batcher runs against a shard spawned here without `detached` (a detached actor gets
// its own thread even under the test coordinator, which would make replies race the test),
// with serving::null_executor as its device. The watchdog test is the one exception: the
// supervisor spawns its shard detached, but that shard hangs and never replies.
#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <algorithm>
#include <future>

#include "actors/batcher.h"
#include "actors/cache.h"
#include "actors/router.h"
#include "actors/shard.h"
#include "actors/supervisor.h"
#include "runtime/serving/step_executor.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::actors {
namespace {

using namespace std::chrono_literals;
using engine::test_util::make_prompt;

// What a probe received. Probes run on the test's thread, so no lock.
struct probe_log {
  std::vector<token_chunk> chunks;
  std::vector<final_message> finals;
  int chunks_after_final = 0;
  std::vector<replica_request> requests;     // as a batcher
  std::vector<std::uint64_t> cancels;        // as a batcher
  std::vector<replica_chunk> replica_chunks; // as a router
  std::vector<replica_final> replica_finals; // as a router
  std::vector<replica_up> ups;               // as a router, from the supervisor
  std::vector<replica_down> downs;
  std::vector<router_counters> router_status;
  std::vector<replica_status> replica_statuses;
  std::vector<supervisor_counters> supervisor_status;
};

caf::behavior probe_actor(caf::event_based_actor*, std::shared_ptr<probe_log> log) {
  return {
      [log](token_chunk& c) { log->chunks_after_final += !log->finals.empty(); log->chunks.push_back(std::move(c)); },
      [log](final_message& f) { log->finals.push_back(std::move(f)); },
      [log](replica_request& r) { log->requests.push_back(std::move(r)); },
      [log](cancel_atom, std::uint64_t id) { log->cancels.push_back(id); },
      [log](replica_chunk& c) { log->replica_chunks.push_back(std::move(c)); },
      [log](replica_chunks& batch) {   // a batcher sends a step's chunks together
        for (auto& c : batch.chunks) log->replica_chunks.push_back(std::move(c));
      },
      [log](replica_final& f) { log->replica_finals.push_back(std::move(f)); },
      [log](replica_up& u) { log->ups.push_back(std::move(u)); },
      [log](replica_down& d) { log->downs.push_back(std::move(d)); },
      [log](router_counters& c) { log->router_status.push_back(std::move(c)); },
      [log](replica_status& s) { log->replica_statuses.push_back(s); },
      [log](supervisor_counters& c) { log->supervisor_status.push_back(std::move(c)); },
  };
}

std::shared_ptr<const tokenizer::tokenizer> tiny_tokenizer() {
  static const auto tok = std::make_shared<const tokenizer::tokenizer>(
      engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir()));
  return tok;
}

generate_request make_request(std::uint64_t id, std::size_t prompt_tokens, int max_tokens) {
  return {.request_id = id, .prompt = make_prompt(prompt_tokens, id), .max_tokens = max_tokens};
}

// Attempt 1 of a request as the router would send it to a batcher.
replica_request make_sequence(std::uint64_t id, std::int64_t prompt_tokens, std::int64_t max_new_tokens) {
  replica_request r{id, 1, {}, {}};
  r.sequence.id = id;
  r.sequence.tokens = make_prompt(std::size_t(prompt_tokens), id);
  r.sequence.prompt_tokens = prompt_tokens;
  r.sequence.max_new_tokens = max_new_tokens;
  return r;
}

batching::scheduler_config no_wait() {
  return {.batch_wait_ms = milliseconds(0)};
}

error internal_error() { return make_error(error_code::internal, "step failed: injected by the test"); }

// The request contract as one client sees it: chunks 0, 1, 2, ... and then exactly one
// final, whose tokens and text are the chunks' and which counts them.
void expect_contract(const probe_log& log, const char* where) {
  ASSERT_EQ(log.finals.size(), 1u) << where << ": finals";
  EXPECT_EQ(log.chunks_after_final, 0) << where << ": chunks after the final";
  std::vector<std::int32_t> tokens;
  std::string text;
  for (std::size_t i = 0; i < log.chunks.size(); ++i) {
    EXPECT_EQ(log.chunks[i].sequence, i) << where << ": chunk " << i;
    tokens.insert(tokens.end(), log.chunks[i].tokens.begin(), log.chunks[i].tokens.end());
    text += log.chunks[i].text;
  }
  const auto& f = log.finals[0];
  EXPECT_EQ(f.chunks_sent, log.chunks.size()) << where;
  EXPECT_EQ(f.tokens, tokens) << where;
  EXPECT_EQ(f.text, text) << where;
  EXPECT_EQ(f.completion_tokens, tokens.size()) << where;
}

class Coordinator : public ::testing::Test {
 protected:
  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.file-verbosity", caf::atom("quiet"));
    cfg.set("logger.console", caf::atom("none"));
    return cfg;
  }
  Coordinator()
      : sys(configure(cfg)), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
    sched.clock().current_time += std::chrono::hours(1);   // clear of the clock's epoch
  }
  ~Coordinator() override {
    for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::kill);
    sched.run();
  }

  caf::actor keep(caf::actor a) {
    actors.push_back(a);
    return a;
  }
  caf::actor probe(std::shared_ptr<probe_log>& log) {
    log = std::make_shared<probe_log>();
    return keep(sys.spawn(probe_actor, log));
  }
  router_options router_config(int replicas) {
    router_options o;
    o.policy.replicas = replicas;
    o.policy.vocab_size = tiny_tokenizer()->vocab_size();
    o.policy.stop_token_ids.clear();   // null_executor's tokens then never end a stream early
    return o;
  }
  caf::actor router(const router_options& o) {
    return keep(spawn_router(sys, o, tiny_tokenizer(), keep(spawn_cache(sys, o.response_cache))));
  }
  // A real batcher on a non-detached shard running null_executor (64 blocks of 16 tokens).
  caf::actor batcher(int replica, batching::scheduler_config s, const caf::actor& router) {
    std::shared_ptr<serving::step_executor> exec =
        std::make_shared<serving::null_executor>(tiny_tokenizer()->vocab_size(), 3, 64, 16, 2048);
    auto shard = keep(sys.spawn(shard_actor, exec, std::make_shared<shard_faults>(), exec->claim()));
    return keep(spawn_batcher(sys, {.replica = replica, .scheduler = s, .kv_blocks = 64, .kv_block_tokens = 16},
                              shard, router));
  }
  // Two fake batchers (probes) up as replicas 0 and 1; a request for `id` sent by `client`.
  // Returns the replica that got attempt 1.
  int start_on_fakes(const caf::actor& r, std::shared_ptr<probe_log> (&fake)[2], const caf::actor& client,
                     const generate_request& req) {
    for (int i = 0; i < 2; ++i) caf::anon_send(r, replica_up{i, fakes[i] = probe(fake[i])});
    caf::send_as(client, r, req);
    sched.run();
    EXPECT_EQ(fake[0]->requests.size() + fake[1]->requests.size(), 1u) << "attempt 1 goes to one replica";
    const int first = fake[0]->requests.empty() ? 1 : 0;
    EXPECT_EQ(fake[first]->requests.at(0).attempt, 1u);
    return first;
  }
  router_counters router_status(const caf::actor& r, const caf::actor& asker, probe_log& log) {
    caf::send_as(asker, r, status_atom::value);
    sched.run();
    return log.router_status.empty() ? router_counters{} : log.router_status.back();
  }

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::vector<caf::actor> actors;   // killed at the end of each test
  caf::actor fakes[2];              // the fake batchers of start_on_fakes
};

TEST_F(Coordinator, TheCacheActorStoresAnswersWithOrWithoutTheKeysHash) {
  auto cache_actor = keep(spawn_cache(sys, {}));
  const auto key = [](std::int32_t first) {
    cache::response_key k;
    k.prompt = {first, 2, 3};
    k.max_tokens = 4;
    return k;
  };
  caf::anon_send(cache_actor, response_store{key(1), {{7}, "a", cache::finish_reason::length}, cache::key_hash(key(1))});
  caf::anon_send(cache_actor, response_store{key(2), {{8}, "b", cache::finish_reason::length}, std::nullopt});
  sched.run();
  auto found = std::make_shared<std::vector<std::optional<cache::cached_response>>>();
  keep(sys.spawn([cache_actor, found, key](caf::event_based_actor* self) {
    for (std::int32_t first : {1, 2, 3})
      self->request(cache_actor, caf::infinite, response_lookup{key(first)}).then([found](response_found& f) {
        found->push_back(std::move(f.response));
      });
  }));
  sched.run();
  ASSERT_EQ(found->size(), 3u);
  ASSERT_TRUE((*found)[0].has_value());
  EXPECT_EQ((*found)[0]->text, "a");
  ASSERT_TRUE((*found)[1].has_value()) << "stored without a hash: the cache hashed the key itself";
  EXPECT_EQ((*found)[1]->text, "b");
  EXPECT_FALSE((*found)[2].has_value());
}

TEST_F(Coordinator, ARequestStreamsThroughRouterBatcherAndShard) {
  std::shared_ptr<probe_log> client_log;
  auto client = probe(client_log);
  auto r = router(router_config(1));
  auto b = batcher(0, no_wait(), r);
  caf::anon_send(r, replica_up{0, b});
  caf::send_as(client, r, make_request(1, 12, 6));
  sched.run();
  expect_contract(*client_log, "router -> batcher -> shard");
  ASSERT_EQ(client_log->finals.size(), 1u);
  const auto& f = client_log->finals[0];
  ASSERT_FALSE(f.failure) << f.failure->to_string();
  EXPECT_EQ(f.completion_tokens, 6u) << "null_executor never stops early: max_tokens tokens";
  EXPECT_EQ(f.prompt_tokens, 12u);
  EXPECT_EQ(f.reason, finish_reason::length);
  EXPECT_EQ(std::count_if(client_log->chunks.begin(), client_log->chunks.end(),
                          [](const token_chunk& c) { return !c.tokens.empty(); }), 6)
      << "one chunk per decode step";
  // The batcher is idle again and leaked no KV block.
  caf::send_as(client, b, status_atom::value);
  sched.run();
  ASSERT_EQ(client_log->replica_statuses.size(), 1u);
  EXPECT_EQ(client_log->replica_statuses[0].running + client_log->replica_statuses[0].waiting, 0);
  EXPECT_EQ(client_log->replica_statuses[0].leaked_blocks, 0);
  EXPECT_EQ(router_status(r, client, *client_log).completed, 1);
}

TEST_F(Coordinator, AFailureBeforeTheFirstTokenRetriesOnTheOtherReplica) {
  std::shared_ptr<probe_log> client_log, fake[2];
  auto client = probe(client_log);
  auto r = router(router_config(2));
  const auto req = make_request(7, 10, 5);
  const int first = start_on_fakes(r, fake, client, req), second = 1 - first;
  caf::anon_send(r, replica_final{7, 1, first, internal_error(), finish_reason::length});
  sched.run();
  ASSERT_EQ(fake[second]->requests.size(), 1u) << "the failed attempt is retried on the other replica";
  const auto& retry = fake[second]->requests[0];
  EXPECT_EQ(retry.attempt, 2u);
  EXPECT_EQ(retry.sequence.tokens, req.prompt) << "a retry before the first token is the same request";
  EXPECT_EQ(retry.sequence.draw_base, 0);
  EXPECT_EQ(retry.sequence.max_new_tokens, 5);
  EXPECT_EQ(fake[first]->requests.size(), 1u) << "not sent back to the replica that failed";
  EXPECT_TRUE(client_log->chunks.empty() && client_log->finals.empty()) << "the client sees nothing of attempt 1";
  // A late chunk of attempt 1 is dropped; attempt 2 streams and ends.
  caf::anon_send(r, replica_chunk{7, 1, first, {42}});
  caf::anon_send(r, replica_chunk{7, 2, second, {100, 101, 102}});
  caf::anon_send(r, replica_chunk{7, 2, second, {103, 104}});
  caf::anon_send(r, replica_final{7, 2, second, std::nullopt, finish_reason::length});
  sched.run();
  expect_contract(*client_log, "after a retry");
  ASSERT_EQ(client_log->finals.size(), 1u);
  EXPECT_FALSE(client_log->finals[0].failure);
  EXPECT_EQ(client_log->finals[0].tokens, (std::vector<std::int32_t>{100, 101, 102, 103, 104}));
  const auto c = router_status(r, client, *client_log);
  EXPECT_TRUE(c.retries == 1 && c.resumptions == 0) << c.retries << " retries, " << c.resumptions << " resumptions";
}

// A streams two tokens, then goes away (replica_down from the supervisor, or its actor
// exits and the router's monitor fires): the request resumes on B where it stopped.
struct CoordinatorResume : Coordinator {
  void run_case(bool by_exit) {
    std::shared_ptr<probe_log> client_log, fake[2];
    auto client = probe(client_log);
    auto r = router(router_config(2));
    const auto req = make_request(11, 9, 5);
    const int a = start_on_fakes(r, fake, client, req), b = 1 - a;
    caf::anon_send(r, replica_chunk{11, 1, a, {200}});
    caf::anon_send(r, replica_chunk{11, 1, a, {201}});
    sched.run();
    ASSERT_EQ(client_log->chunks.size(), 2u) << "A's two tokens reach the client";
    if (by_exit)
      caf::anon_send_exit(fakes[a], caf::exit_reason::kill);
    else
      caf::anon_send(r, replica_down{a, false, "test"});
    sched.run();
    ASSERT_EQ(fake[b]->requests.size(), 1u) << "the request resumes on the other replica";
    const auto& resumed = fake[b]->requests[0];
    auto expected = req.prompt;
    expected.insert(expected.end(), {200, 201});
    EXPECT_EQ(resumed.attempt, 2u);
    EXPECT_EQ(resumed.sequence.tokens, expected) << "prompt + the tokens already streamed";
    EXPECT_EQ(resumed.sequence.prompt_tokens, std::int64_t(req.prompt.size()));
    EXPECT_EQ(resumed.sequence.draw_base, 2);
    EXPECT_EQ(resumed.sequence.max_new_tokens, 3);
    // A's late chunk and final (attempt 1) are dropped; B continues at sequence 2.
    caf::anon_send(r, replica_chunk{11, 1, a, {999}});
    caf::anon_send(r, replica_final{11, 1, a, std::nullopt, finish_reason::length});
    sched.run();
    EXPECT_EQ(client_log->chunks.size(), 2u) << "a chunk of the old attempt reached the client";
    EXPECT_TRUE(client_log->finals.empty()) << "a final of the old attempt reached the client";
    caf::anon_send(r, replica_chunk{11, 2, b, {202, 203, 204}});
    caf::anon_send(r, replica_final{11, 2, b, std::nullopt, finish_reason::length});
    sched.run();
    expect_contract(*client_log, by_exit ? "resumed after exit" : "resumed after replica_down");
    ASSERT_EQ(client_log->finals.size(), 1u);
    EXPECT_FALSE(client_log->finals[0].failure);
    EXPECT_EQ(client_log->finals[0].tokens, (std::vector<std::int32_t>{200, 201, 202, 203, 204}));
    EXPECT_EQ(router_status(r, client, *client_log).resumptions, 1);
  }
};

TEST_F(CoordinatorResume, AfterReplicaDown) { run_case(false); }
TEST_F(CoordinatorResume, AfterTheBatcherExits) { run_case(true); }

TEST_F(Coordinator, AResumedStreamMatchesTheUninterruptedOne) {
  std::shared_ptr<probe_log> client_log, reference_log;
  auto client = probe(client_log);
  auto reference = probe(reference_log);
  auto r = router(router_config(2));
  auto b0 = batcher(0, no_wait(), r);
  auto b1 = batcher(1, no_wait(), r);
  caf::anon_send(r, replica_up{0, b0});
  auto req = make_request(21, 20, 16);
  caf::send_as(reference, r, req);   // uninterrupted, on replica 0 (the only one up)
  sched.run();
  ASSERT_EQ(reference_log->finals.size(), 1u);
  ASSERT_EQ(reference_log->finals[0].tokens.size(), 16u);
  req.request_id = 22;
  caf::send_as(client, r, req);
  for (int step = 0; client_log->chunks.size() < 3; ++step)
    ASSERT_TRUE(sched.try_run_once()) << "stalled before the third chunk at step " << step;
  caf::anon_send(r, replica_up{1, b1});
  caf::anon_send_exit(b0, caf::exit_reason::kill);   // its shard goes with it (linked)
  sched.run();
  expect_contract(*client_log, "resumed on a real batcher");
  ASSERT_EQ(client_log->finals.size(), 1u);
  ASSERT_FALSE(client_log->finals[0].failure) << client_log->finals[0].failure->to_string();
  EXPECT_EQ(client_log->finals[0].tokens, reference_log->finals[0].tokens)
      << "prompt + streamed tokens and draw_base make the resumed stream the same";
  EXPECT_EQ(router_status(r, client, *client_log).resumptions, 1);
}

TEST_F(Coordinator, ACancelSendsOneFinalAndDropsLaterChunks) {
  std::shared_ptr<probe_log> client_log, fake[2];
  auto client = probe(client_log);
  auto r = router(router_config(2));
  const int a = start_on_fakes(r, fake, client, make_request(9, 8, 10));
  caf::anon_send(r, replica_chunk{9, 1, a, {300}});
  sched.run();
  caf::send_as(client, r, cancel_atom::value, std::uint64_t{9});
  sched.run();
  EXPECT_EQ(fake[a]->cancels, std::vector<std::uint64_t>{9}) << "the batcher is told to stop";
  ASSERT_EQ(client_log->finals.size(), 1u);
  ASSERT_TRUE(client_log->finals[0].failure);
  EXPECT_EQ(client_log->finals[0].failure->code, error_code::cancelled);
  caf::anon_send(r, replica_chunk{9, 1, a, {301}});
  caf::anon_send(r, replica_final{9, 1, a, make_error(error_code::cancelled, "cancelled"), finish_reason::length});
  caf::send_as(client, r, cancel_atom::value, std::uint64_t{9});
  sched.run();
  expect_contract(*client_log, "after cancel");
  EXPECT_EQ(client_log->chunks.size(), 1u);
  EXPECT_EQ(fake[1 - a]->requests.size(), 0u) << "a cancel is not retried";
}

// A half-open breaker lets half_open_probes_max probes through and closes only when they
// all succeed: a probe the client cancels must not hold its slot forever.
TEST_F(Coordinator, ACancelledHalfOpenProbeDoesNotWedgeTheBreaker) {
  auto o = router_config(1);
  o.policy.breaker = {.window_requests_min = 1, .window_ms = milliseconds(1000), .window_buckets = 10,
               .open_ms = milliseconds(100), .half_open_probes_max = 1};
  std::shared_ptr<probe_log> client_log, fake;
  auto client = probe(client_log);
  auto r = router(o);
  caf::anon_send(r, replica_up{0, probe(fake)});
  caf::send_as(client, r, make_request(1, 8, 4));
  sched.run();
  caf::anon_send(r, replica_final{1, 1, 0, internal_error(), finish_reason::length});
  sched.run();
  ASSERT_EQ(client_log->finals.size(), 1u);
  ASSERT_TRUE(client_log->finals[0].failure) << "the only replica failed: UNAVAILABLE";
  EXPECT_EQ(router_status(r, client, *client_log).breaker_states.at(0), int(policy::breaker_state::open));
  sched.advance_time(100ms);   // open -> half-open
  caf::send_as(client, r, make_request(2, 8, 4));
  sched.run();
  ASSERT_EQ(fake->requests.size(), 2u) << "the half-open breaker lets a probe through";
  caf::send_as(client, r, cancel_atom::value, std::uint64_t{2});
  sched.run();
  for (int round = 0; round < 5 && fake->requests.size() < 3; ++round) {
    sched.advance_time(100ms);
    caf::send_as(client, r, make_request(std::uint64_t(10 + round), 8, 4));
    sched.run();
  }
  EXPECT_EQ(fake->requests.size(), 3u) << "the replica never gets traffic again after a cancelled probe";
}

// A request that finds no replica up waits (routing.replica_wait_ms); the replica's coming
// up sends it there at once, with no time passing (not at the next message or timer).
TEST_F(Coordinator, ARequestWaitingForAReplicaGoesToItTheMomentItComesUp) {
  auto o = router_config(1);
  o.policy.replica_wait_ms = milliseconds(1000);
  std::shared_ptr<probe_log> client_log, fake;
  auto client = probe(client_log);
  auto r = router(o);
  caf::send_as(client, r, make_request(1, 8, 4));
  sched.run();
  EXPECT_TRUE(client_log->finals.empty()) << "it waits for a replica";
  caf::anon_send(r, replica_up{0, probe(fake)});
  sched.run();
  ASSERT_EQ(fake->requests.size(), 1u);
  EXPECT_EQ(fake->requests[0].request_id, 1u);
  EXPECT_TRUE(client_log->finals.empty());
  // Another request, then the wait runs out with no replica: UNAVAILABLE.
  caf::anon_send(r, replica_down{0});
  caf::send_as(client, r, make_request(2, 8, 4));
  sched.run();
  sched.advance_time(1000ms);
  sched.run();
  ASSERT_EQ(client_log->finals.size(), 2u);
  for (const auto& f : client_log->finals) {
    ASSERT_TRUE(f.failure);
    EXPECT_EQ(f.failure->code, error_code::unavailable) << f.failure->to_string();
  }
}

TEST_F(Coordinator, UnderLightLoadTheBatcherWaitsForTheBatchWindow) {
  const batching::scheduler_config s{.batch_wait_ms = milliseconds(50), .batch_fill_sequences = 4};
  std::shared_ptr<probe_log> router_log;
  auto router_stand_in = probe(router_log);
  auto b = batcher(0, s, router_stand_in);
  auto sequence = [](std::uint64_t id) { return make_sequence(id, 12, 3); };
  caf::anon_send(b, sequence(1));
  sched.run();
  EXPECT_TRUE(router_log->replica_chunks.empty()) << "one request starts before the batch window closes";
  sched.advance_time(49ms);
  sched.run();
  EXPECT_TRUE(router_log->replica_chunks.empty()) << "started at 49 ms of a 50 ms window";
  sched.advance_time(1ms);
  sched.run();
  EXPECT_EQ(router_log->replica_chunks.size(), 3u) << "the window closed: it runs to max_new_tokens";
  ASSERT_EQ(router_log->replica_finals.size(), 1u);
  EXPECT_FALSE(router_log->replica_finals[0].failure);
  // Four requests fill the batch: they start at once, together (3 steps, not 12).
  for (std::uint64_t id = 2; id <= 5; ++id) caf::anon_send(b, sequence(id));
  sched.run();
  EXPECT_EQ(router_log->replica_finals.size(), 5u) << "a full batch waits for no timer";
  caf::send_as(router_stand_in, b, status_atom::value);
  sched.run();
  ASSERT_EQ(router_log->replica_statuses.size(), 1u);
  EXPECT_EQ(router_log->replica_statuses[0].steps, 6u) << "3 steps alone + 3 steps for the batch of four";
  // A cancel while waiting: the batcher reports it cancelled, frees it, runs nothing.
  caf::anon_send(b, sequence(6));
  sched.run();
  caf::anon_send(b, cancel_atom::value, std::uint64_t{6});
  sched.run();
  ASSERT_EQ(router_log->replica_finals.size(), 6u) << "a cancelled sequence gets its final";
  ASSERT_TRUE(router_log->replica_finals[5].failure);
  EXPECT_EQ(router_log->replica_finals[5].failure->code, error_code::cancelled);
  EXPECT_EQ(router_log->replica_chunks.size(), 15u) << "the cancelled sequence produced no token";
}

// A device that hangs: run() blocks until released (before teardown, on the shard's thread).
struct hung_executor final : serving::step_executor {
  result<std::vector<std::int32_t>> run(const batching::step_plan&) override {
    released.wait();
    return make_error(error_code::internal, "the hung step was released");
  }
  std::int32_t kv_blocks() const override { return 64; }
  int kv_block_tokens() const override { return 16; }
  std::int64_t step_tokens_max() const override { return 2048; }
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
};

TEST_F(Coordinator, TheWatchdogRestartsAReplicaWhoseStepNeverCompletes) {
  auto hung = std::make_shared<hung_executor>();
  struct release_at_exit {
    std::shared_ptr<hung_executor> e;
    ~release_at_exit() { e->release.set_value(); }
  } releaser{hung};
  const supervisor_options o{.replicas = 1, .scheduler = no_wait(), .watchdog_interval_ms = milliseconds(100),
                             .watchdog_stall_ms = milliseconds(300), .executors = {hung},
                             .faults = {std::make_shared<shard_faults>()}};
  std::shared_ptr<probe_log> router_log;
  auto router_stand_in = probe(router_log);
  auto sup = keep(spawn_supervisor(sys, o, router_stand_in));
  sched.run();
  ASSERT_EQ(router_log->ups.size(), 1u) << "the supervisor brings the replica up";
  auto first = keep(router_log->ups[0].batcher);
  caf::anon_send(first, make_sequence(1, 8, 4));   // its first step never completes
  sched.run();
  int round = 0;
  while (round < 10 && router_log->downs.empty()) {
    ++round;
    sched.advance_time(100ms);
    sched.run();
  }
  ASSERT_EQ(router_log->downs.size(), 1u) << "no restart after " << round << " watchdog rounds";
  EXPECT_EQ(round, 3) << "killed at watchdog_stall_ms (300 ms = 3 rounds of 100 ms), not before";
  EXPECT_FALSE(router_log->downs[0].permanent);
  ASSERT_EQ(router_log->ups.size(), 2u) << "the replica is restarted";
  EXPECT_NE(router_log->ups[1].batcher, first);
  keep(router_log->ups[1].batcher);
  // The new replica is idle: an idle replica is not stalled, however long it stays idle.
  for (int idle = 1; idle <= 5; ++idle) {
    sched.advance_time(100ms);
    sched.run();
    ASSERT_EQ(router_log->downs.size(), 1u) << "an idle replica was killed at idle round " << idle;
  }
  caf::send_as(router_stand_in, sup, status_atom::value);
  sched.run();
  ASSERT_EQ(router_log->supervisor_status.size(), 1u);
  EXPECT_EQ(router_log->supervisor_status[0].restarts.at(0), 1);
}

}  // namespace
}  // namespace dsrt::actors
