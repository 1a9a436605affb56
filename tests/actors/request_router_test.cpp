// serving::request_router, the router's policy, stepped event by event under virtual time
// with no actors: the actions it queues for retry, resumption, stop strings, cancel and the
// fallback chain, and a seeded random storm of replica events after which every accepted
// request has exactly one final and gap-free chunks.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "runtime/random.h"
#include "runtime/serving/request_router.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::serving {
namespace {

const tokenizer::tokenizer& tiny_tokenizer() {
  static const auto tok = engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir());
  return tok;
}

router_config config(std::int32_t replicas) {
  router_config c;
  c.replicas = replicas;
  c.vocab_size = tiny_tokenizer().vocab_size();
  c.choice.affinity_prefix_tokens = 0;   // least loaded, ties to the lower index
  return c;
}

generate_request request(std::uint64_t id, std::int32_t max_tokens) {
  generate_request r;
  r.request_id = id;
  r.prompt = engine::test_util::make_prompt(6, id);
  r.max_tokens = max_tokens;
  return r;
}

template <class T>
std::vector<T> only(const std::vector<router_action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions)
    if (const auto* x = std::get_if<T>(&a)) out.push_back(*x);
  return out;
}

// Taking the actions into a kept buffer gives what the returning form gives, in order,
// whatever the buffer held before; the buffer's old contents never come back.
TEST(RequestRouter, ActionsTakenIntoAKeptBufferAreTheActionsInOrder) {
  request_router fresh(config(2), &tiny_tokenizer()), kept(config(2), &tiny_tokenizer());
  std::vector<router_action> buffer;
  clock_time now{};
  for (int i = 0; i < 2; ++i) {
    fresh.on_replica_up(now, i);
    kept.on_replica_up(now, i);
  }
  for (std::uint64_t id = 1; id <= 3; ++id) {
    fresh.on_generate(now, request(id, 4));
    kept.on_generate(now, request(id, 4));
  }
  buffer.push_back(cancel_on_replica{1, 99});   // stale: must be gone
  kept.take_actions(buffer);
  const auto expected = fresh.take_actions();
  ASSERT_EQ(buffer.size(), 3u);
  ASSERT_EQ(expected.size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    const auto& a = std::get<send_request>(buffer[k]);
    const auto& b = std::get<send_request>(expected[k]);
    EXPECT_EQ(a.replica, b.replica);
    EXPECT_EQ(a.request.request_id, b.request.request_id);
    EXPECT_EQ(a.request.sequence.tokens, b.request.sequence.tokens);
  }
  // Nothing pending: the buffer comes back empty (the router kept the old one's capacity).
  kept.take_actions(buffer);
  EXPECT_TRUE(buffer.empty());
  kept.on_replica_down(now, 0);   // resumes what replica 0 held, on replica 1
  fresh.on_replica_down(now, 0);
  kept.take_actions(buffer);
  EXPECT_EQ(only<send_request>(buffer).size(), only<send_request>(fresh.take_actions()).size());
  EXPECT_FALSE(only<send_request>(buffer).empty());
}

TEST(RequestRouter, RetriesBeforeTheFirstTokenAndResumesAfterIt) {
  request_router router(config(3), &tiny_tokenizer());
  clock_time now{};
  for (int i = 0; i < 3; ++i) router.on_replica_up(now, i);
  router.on_generate(now, request(1, 5));
  auto sent = only<send_request>(router.take_actions());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].replica, 0);
  EXPECT_EQ(sent[0].request.attempt, 1u);

  // Attempt 1 fails before any token: a retry on another replica, nothing to the client.
  router.on_final(now, {1, 1, 0, make_error(error_code::internal, "step failed"), finish_reason::length});
  auto actions = router.take_actions();
  sent = only<send_request>(actions);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_NE(sent[0].replica, 0) << "a retry avoids the replica that failed";
  EXPECT_EQ(sent[0].request.attempt, 2u);
  EXPECT_EQ(sent[0].request.sequence.draw_base, 0);
  EXPECT_TRUE(only<send_chunk>(actions).empty());
  const std::int32_t second = sent[0].replica;

  // Two tokens stream, then that replica goes down: resumption on the third replica.
  router.on_chunk(now, {1, 2, second, {40, 41}});
  auto chunks = only<send_chunk>(router.take_actions());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].chunk.sequence, 0u);
  router.on_replica_down(now, second);
  sent = only<send_request>(router.take_actions());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].request.attempt, 3u);
  const auto& seq = sent[0].request.sequence;
  auto expected = request(1, 5).prompt;
  expected.push_back(40);
  expected.push_back(41);
  EXPECT_EQ(seq.tokens, expected) << "prompt + the tokens already streamed";
  EXPECT_EQ(seq.draw_base, 2);
  EXPECT_EQ(seq.max_new_tokens, 3);
  EXPECT_EQ(router.counters().retries, 1);
  EXPECT_EQ(router.counters().resumptions, 1);

  // A late chunk of attempt 2 is dropped; attempt 3 continues at sequence 1.
  router.on_chunk(now, {1, 2, second, {99}});
  EXPECT_TRUE(router.take_actions().empty());
  router.on_chunk(now, {1, 3, sent[0].replica, {42, 43, 44}});
  router.on_final(now, {1, 3, sent[0].replica, std::nullopt, finish_reason::length});
  actions = router.take_actions();
  chunks = only<send_chunk>(actions);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].chunk.sequence, 1u);
  const auto finals = only<send_final>(actions);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_FALSE(finals[0].final.failure);
  EXPECT_EQ(finals[0].final.tokens, (std::vector<std::int32_t>{40, 41, 42, 43, 44}));
  EXPECT_EQ(router.routes(), 0u);
}

TEST(RequestRouter, AttemptsAreBoundedThenTheFallbackChainAnswers) {
  auto c = config(2);
  c.request_attempts_max = 2;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  router.on_replica_up(now, 1);
  router.on_generate(now, request(7, 4));
  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    auto sent = only<send_request>(router.take_actions());
    ASSERT_EQ(sent.size(), 1u) << "attempt " << attempt;
    router.on_final(now, {7, attempt, sent[0].replica, make_error(error_code::internal, "x"), finish_reason::length});
  }
  // Attempts spent; a greedy request with nothing streamed asks the response cache.
  auto lookups = only<lookup_response>(router.take_actions());
  ASSERT_EQ(lookups.size(), 1u);
  router.on_cached(now, 7, std::nullopt);
  const auto finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  ASSERT_TRUE(finals[0].final.failure);
  EXPECT_EQ(finals[0].final.failure->code, error_code::unavailable);
  EXPECT_GT(finals[0].final.retry_after_ms, 0u);
  router.on_cached(now, 7, std::nullopt);   // a second answer finds nothing to do
  EXPECT_TRUE(router.take_actions().empty());
}

// replica_wait_ms: with no replica up at all (a worker restarting or reconnecting) a
// request waits for one instead of failing; a resumed one continues where it was.
TEST(RequestRouter, ARequestWithNoReplicaUpWaitsForOneThenGoesOn) {
  auto c = config(2);
  c.replica_wait_ms = milliseconds(1000);
  c.response_cache = false;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  router.on_generate(now, request(1, 5));
  auto sent = only<send_request>(router.take_actions());
  ASSERT_EQ(sent.size(), 1u);
  router.on_chunk(now, {1, 1, 0, {40, 41}});
  router.take_actions();
  // The only replica goes: the request waits (no final), its wait is the router's next timer.
  router.on_replica_down(now, 0);
  EXPECT_TRUE(router.take_actions().empty());
  EXPECT_EQ(router.next_deadline(), now + c.replica_wait_ms);
  EXPECT_EQ(router.counters().waited, 1);
  // A new request waits too.
  router.on_generate(now, request(2, 3));
  EXPECT_TRUE(router.take_actions().empty());
  EXPECT_EQ(router.routes(), 2u);
  // 900 ms later replica 1 comes up: both go to it, in the order they began to wait; the
  // first resumes after the two tokens it had.
  now += milliseconds(900);
  router.on_deadlines(now);
  EXPECT_TRUE(router.take_actions().empty());
  router.on_replica_up(now, 1);
  sent = only<send_request>(router.take_actions());
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].request.request_id, 1u);
  EXPECT_EQ(sent[0].replica, 1);
  EXPECT_EQ(sent[0].request.attempt, 2u);
  EXPECT_EQ(sent[0].request.sequence.draw_base, 2);
  EXPECT_EQ(sent[1].request.request_id, 2u);
  EXPECT_EQ(sent[1].request.attempt, 1u);
  EXPECT_FALSE(router.next_deadline()) << "nothing waits any more";
  router.on_chunk(now, {1, 2, 1, {42, 43, 44}});
  router.on_final(now, {1, 2, 1, std::nullopt, finish_reason::length});
  const auto finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_FALSE(finals[0].final.failure);
  EXPECT_EQ(finals[0].final.tokens, (std::vector<std::int32_t>{40, 41, 42, 43, 44}));
}

TEST(RequestRouter, AWaitWithoutAReplicaEndsUnavailableAndACancelEndsItAtOnce) {
  auto c = config(1);
  c.replica_wait_ms = milliseconds(1000);
  c.response_cache = false;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  router.on_generate(now, request(1, 4));
  now += milliseconds(10);
  router.on_generate(now, request(2, 4));
  router.on_generate(now, request(3, 4));
  EXPECT_TRUE(router.take_actions().empty());
  // A cancel ends a waiting request at once; nothing goes to a replica for it later.
  router.on_cancel(now, 3);
  auto finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.failure->code, error_code::cancelled);
  // Each wait ends on its own: request 1 first.
  now += milliseconds(990);
  ASSERT_EQ(router.next_deadline(), now);
  router.on_deadlines(now);
  finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.request_id, 1u);
  EXPECT_EQ(finals[0].final.failure->code, error_code::unavailable);
  EXPECT_NE(finals[0].final.failure->message.find("replica_wait_ms"), std::string::npos);
  EXPECT_GT(finals[0].final.retry_after_ms, 0u);
  now += milliseconds(10);
  router.on_deadlines(now);
  finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.request_id, 2u);
  router.on_replica_up(now, 0);
  EXPECT_TRUE(router.take_actions().empty());
  EXPECT_EQ(router.routes(), 0u);
}

TEST(RequestRouter, WithReplicasUpButNoneWillingARequestFallsBackAtOnce) {
  // Replica 0 is up but its breaker is open: no wait, the fallback answers now. So does
  // every request when replica_wait_ms is 0.
  auto c = config(1);
  c.replica_wait_ms = milliseconds(1000);
  c.response_cache = false;
  c.breaker.window_requests_min = 1;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  router.on_generate(now, request(1, 4));
  router.take_actions();
  router.on_final(now, {1, 1, 0, make_error(error_code::internal, "x"), finish_reason::length});
  router.take_actions();   // its retry found no replica willing: it has its final
  ASSERT_NE(router.breaker(0).state(now), policy::breaker_state::closed);
  router.on_generate(now, request(2, 4));
  auto finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.failure->code, error_code::unavailable);
  EXPECT_EQ(router.counters().waited, 0);

  auto z = config(1);
  z.replica_wait_ms = milliseconds(0);
  z.response_cache = false;
  request_router at_once(z, &tiny_tokenizer());
  at_once.on_generate(now, request(3, 4));
  finals = only<send_final>(at_once.take_actions());
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.failure->code, error_code::unavailable);
}

// A replica that leaves (its node lost, its batcher gone) is out by membership; its
// breaker counts failures of a replica that stays up. Counted, a blip that cut every worker
// off opened every breaker, and the replicas, back at once, refused requests for open_ms.
TEST(RequestRouter, RequestsOfAReplicaThatLeftAreNoFailuresToItsBreaker) {
  auto c = config(2);
  c.breaker.window_requests_min = 1;
  c.replica_wait_ms = milliseconds(0);
  c.response_cache = false;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  router.on_replica_up(now, 1);
  for (std::uint64_t id = 1; id <= 4; ++id) router.on_generate(now, request(id, 4));
  const auto sent = only<send_request>(router.take_actions());
  ASSERT_EQ(sent.size(), 4u);
  router.on_replica_down(now, 0);   // its requests go to replica 1
  router.on_replica_down(now, 1);   // and fail there: no replica left
  const auto finals = only<send_final>(router.take_actions());
  ASSERT_EQ(finals.size(), 4u);
  router.on_replica_up(now, 0);
  router.on_replica_up(now, 1);
  EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::closed);
  EXPECT_EQ(router.breaker(1).state(now), policy::breaker_state::closed);
  router.on_generate(now, request(9, 4));
  EXPECT_EQ(only<send_request>(router.take_actions()).size(), 1u) << "served at once";
  // A replica that fails requests while up still opens its breaker.
  router.on_final(now, {9, 1, 0, make_error(error_code::internal, "step failed"), finish_reason::length});
  router.take_actions();
  EXPECT_NE(router.breaker(0).state(now), policy::breaker_state::closed);
}

TEST(RequestRouter, ACancelEndsTheRequestOnceAndStopsItsReplica) {
  request_router router(config(1), &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  router.on_generate(now, request(3, 8));
  router.take_actions();
  router.on_cancel(now, 3);
  auto actions = router.take_actions();
  ASSERT_EQ(only<cancel_on_replica>(actions).size(), 1u);
  const auto finals = only<send_final>(actions);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.failure->code, error_code::cancelled);
  router.on_chunk(now, {3, 1, 0, {5}});
  router.on_final(now, {3, 1, 0, std::nullopt, finish_reason::length});
  router.on_cancel(now, 3);
  EXPECT_TRUE(router.take_actions().empty()) << "nothing for a request after its final";
}

TEST(RequestRouter, TheRouterEndsARequestAtItsDeadlineWhateverItsReplicaDoes) {
  // The replica never answers (paused, cut off, or slow to read a deadline that arrived
  // late): the router's own clock ends the request, once, and stops the replica.
  request_router router(config(1), &tiny_tokenizer());
  clock_time now{};
  router.on_replica_up(now, 0);
  auto early = request(4, 8), late = request(5, 8), none = request(6, 8);
  early.deadline = now + milliseconds(100);
  late.deadline = now + milliseconds(300);
  router.on_generate(now, early);
  router.on_generate(now, late);
  router.on_generate(now, none);
  router.take_actions();
  EXPECT_EQ(router.next_deadline(), now + milliseconds(100));

  router.on_deadlines(now + milliseconds(99));
  EXPECT_TRUE(router.take_actions().empty()) << "nothing before the deadline";
  router.on_chunk(now, {4, 1, 0, {7}});
  router.take_actions();
  router.on_deadlines(now + milliseconds(100));
  auto actions = router.take_actions();
  ASSERT_EQ(only<cancel_on_replica>(actions).size(), 1u);
  auto finals = only<send_final>(actions);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].final.request_id, 4u);
  ASSERT_TRUE(finals[0].final.failure.has_value());
  EXPECT_EQ(finals[0].final.failure->code, error_code::deadline_exceeded);
  EXPECT_EQ(finals[0].final.chunks_sent, 1u) << "the chunk already sent is counted";
  EXPECT_EQ(router.counters().expired, 1);
  EXPECT_EQ(router.next_deadline(), now + milliseconds(300));

  // Request 5 finishes in time: its deadline entry is dropped, and nothing fires for it.
  router.on_final(now, {5, 1, 0, std::nullopt, finish_reason::length});
  router.take_actions();
  EXPECT_FALSE(router.next_deadline().has_value()) << "request 6 has no deadline";
  router.on_deadlines(now + milliseconds(1000));
  EXPECT_TRUE(router.take_actions().empty());
  router.on_chunk(now, {4, 1, 0, {8}});
  router.on_final(now, {4, 1, 0, std::nullopt, finish_reason::length});
  EXPECT_TRUE(router.take_actions().empty()) << "nothing for request 4 after its final";
  EXPECT_EQ(router.routes(), 1u);
}

// Replicas that stream, fail, die and come back at random; clients that cancel. Whatever
// happens, every accepted request ends with exactly one final after gap-free chunks.
// One replica whose breaker opens after two failures and half-opens 100 ms later, with
// two probes; open_the_breaker fails requests 1 and 2 on it at `now`, which opens it.
router_config one_replica_quick_breaker() {
  auto c = config(1);
  c.breaker.window_requests_min = 2;
  c.breaker.open_ms = milliseconds(100);
  c.breaker.half_open_probes_max = 2;
  return c;
}
void open_the_breaker(request_router& router, clock_time now) {
  router.on_replica_up(now, 0);
  for (std::uint64_t id = 1; id <= 2; ++id) {
    router.on_generate(now, request(id, 4));
    router.on_final(now, {id, 1, 0, make_error(error_code::internal, "step failed"), finish_reason::length});
  }
  router.take_actions();
}

// A half-open probe whose replica ends it with DEADLINE_EXCEEDED (or CANCELLED) before any
// token did not succeed, whichever comes first, the replica's final or the router's own deadline timer:
// the breaker opens again instead of closing on probes that all timed out.
TEST(RequestRouter, AProbeTheReplicaEndsAtItsDeadlineIsNoSuccess) {
  const auto c = one_replica_quick_breaker();
  for (const auto code : {error_code::deadline_exceeded, error_code::cancelled}) {
    request_router router(c, &tiny_tokenizer());
    clock_time now{};
    open_the_breaker(router, now);
    ASSERT_EQ(router.breaker(0).state(now), policy::breaker_state::open);
    now += milliseconds(150);
    ASSERT_EQ(router.breaker(0).state(now), policy::breaker_state::half_open);
    for (std::uint64_t id = 3; id <= 4; ++id) {
      auto r = request(id, 4);
      r.deadline = now + milliseconds(50);
      router.on_generate(now, r);
    }
    const auto probes = only<send_request>(router.take_actions());
    ASSERT_EQ(probes.size(), 2u);
    now += milliseconds(50);
    for (const auto& p : probes)
      router.on_final(now, {p.request.request_id, p.request.attempt, 0, make_error(code, "stopped"), finish_reason::length});
    EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::open)
        << error_code_name(code) << ": probes that did not finish closed the breaker";
    const auto finals = only<send_final>(router.take_actions());
    ASSERT_EQ(finals.size(), 2u);
    for (const auto& f : finals) EXPECT_EQ(f.final.failure->code, code);
  }
}

// A probe's verdict is the replica's first tokens for it, not the end of a generation that
// may run for minutes (while a half-open breaker lets nothing else through): once both
// probes have streamed, the breaker closes and requests flow; the probes' own ends count
// no more.
TEST(RequestRouter, AProbeSucceedsWithItsFirstTokens) {
  const auto c = one_replica_quick_breaker();
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  open_the_breaker(router, now);
  now += milliseconds(150);
  ASSERT_EQ(router.breaker(0).state(now), policy::breaker_state::half_open);
  for (std::uint64_t id = 3; id <= 4; ++id) router.on_generate(now, request(id, 8));
  const auto probes = only<send_request>(router.take_actions());
  ASSERT_EQ(probes.size(), 2u);
  router.on_chunk(now, {probes[0].request.request_id, probes[0].request.attempt, 0, {7}});
  EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::half_open) << "one probe of two has answered";
  router.on_chunk(now, {probes[1].request.request_id, probes[1].request.attempt, 0, {7}});
  EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::closed) << "both probes streamed";
  router.on_generate(now, request(5, 4));
  EXPECT_EQ(only<send_request>(router.take_actions()).size(), 1u) << "a closed breaker lets requests through";
  router.on_final(now, {probes[0].request.request_id, probes[0].request.attempt, 0, std::nullopt, finish_reason::length});
  router.on_final(now, {probes[1].request.request_id, probes[1].request.attempt, 0, make_error(error_code::cancelled, "stopped"),
                        finish_reason::length});
  EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::closed) << "a probe's end is no second verdict";
}

// Probes with no deadline on a replica that never answers them must not hold the breaker
// half-open with every probe taken: after probe_verdict_ms each counts as failed — the
// requests themselves go on — and the breaker probes again later.
TEST(RequestRouter, AProbeWithoutAVerdictInProbeVerdictMsCountsAsFailed) {
  auto c = one_replica_quick_breaker();
  c.probe_verdict_ms = milliseconds(1000);
  c.response_cache = false;
  request_router router(c, &tiny_tokenizer());
  clock_time now{};
  open_the_breaker(router, now);
  now += milliseconds(150);
  for (std::uint64_t id = 3; id <= 4; ++id) router.on_generate(now, request(id, 4));   // no deadlines
  ASSERT_EQ(only<send_request>(router.take_actions()).size(), 2u);
  router.on_generate(now, request(5, 4));   // every probe taken: no replica for this one
  ASSERT_EQ(only<send_final>(router.take_actions()).size(), 1u);
  ASSERT_EQ(router.next_deadline(), now + c.probe_verdict_ms);
  now += c.probe_verdict_ms;
  router.on_deadlines(now);
  EXPECT_EQ(router.breaker(0).state(now), policy::breaker_state::open) << "the silent probes held it half-open";
  EXPECT_TRUE(only<send_final>(router.take_actions()).empty()) << "the probe requests themselves go on";
  EXPECT_FALSE(router.next_deadline()) << "their verdicts are in";
  now += milliseconds(150);
  router.on_generate(now, request(6, 4));   // half-open again: a new probe goes out
  EXPECT_EQ(only<send_request>(router.take_actions()).size(), 1u);
}

// What the client and the replicas see of a router's actions, as text.
std::vector<std::string> describe(const std::vector<router_action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    if (const auto* c = std::get_if<send_chunk>(&a)) {
      std::string text = "chunk " + std::to_string(c->chunk.request_id) + "#" + std::to_string(c->chunk.sequence);
      for (auto t : c->chunk.tokens) text += " " + std::to_string(t);
      out.push_back(text);
    } else if (const auto* f = std::get_if<send_final>(&a)) {
      out.push_back("final " + std::to_string(f->final.request_id) + (f->final.failure ? " failed" : " ok") + " " +
                    std::to_string(f->final.tokens.size()));
    } else if (const auto* x = std::get_if<cancel_on_replica>(&a)) {
      out.push_back("cancel " + std::to_string(x->request_id) + " on " + std::to_string(x->replica));
    } else {
      out.push_back("other");
    }
  }
  return out;
}

TEST(RequestRouter, ChunksOfOneMessageActAsOneByOne) {
  // The same step's chunks given one by one and as one message: the same actions, for
  // live routes, a stale attempt, an unknown id, a chunk past max_tokens and a stop string.
  auto make = [] {
    auto r = std::make_unique<request_router>(config(2), &tiny_tokenizer());
    for (int i = 0; i < 2; ++i) r->on_replica_up(clock_time{}, i);
    for (std::uint64_t id = 1; id <= 4; ++id) {
      auto req = request(id, id == 3 ? 2 : 20);
      if (id == 4) req.stop = {"b"};
      r->on_generate(clock_time{}, std::move(req));
    }
    return r;
  };
  auto one_by_one = make(), batched = make();
  std::map<std::uint64_t, std::int32_t> replica_of;
  for (const auto& s : only<send_request>(one_by_one->take_actions())) replica_of[s.request.request_id] = s.replica;
  batched->take_actions();
  const auto b_token = tiny_tokenizer().encode("b", /*add_special=*/false);
  ASSERT_FALSE(b_token.empty());
  const std::vector<replica_chunk> chunks = {
      {1, 1, replica_of[1], {10, 11}},
      {2, 7, replica_of[2], {12}},          // an attempt the router never made
      {99, 1, 0, {13}},                     // no such request
      {3, 1, replica_of[3], {14, 15, 16}},  // one token past max_tokens
      {4, 1, replica_of[4], {b_token.front(), 17}},   // stops at "b"
      {1, 1, replica_of[1], {18}},
  };
  const clock_time now = clock_time{} + milliseconds(5);
  for (const auto& c : chunks) one_by_one->on_chunk(now, c);
  batched->on_chunks(now, chunks);
  const auto expected = describe(one_by_one->take_actions());
  EXPECT_EQ(describe(batched->take_actions()), expected);
  EXPECT_GE(expected.size(), 5u) << "chunks of 1, 3 and 4, request 4's final and its cancel";
  EXPECT_EQ(batched->routes(), one_by_one->routes());
}

TEST(RequestRouter, ACompletedAnswerGoesToTheCacheWithItsKeysHash) {
  request_router router(config(1), &tiny_tokenizer());
  router.on_replica_up(clock_time{}, 0);
  router.on_generate(clock_time{}, request(5, 2));
  router.take_actions();
  router.on_chunk(clock_time{}, {5, 1, 0, {40, 41}});
  router.on_final(clock_time{}, {5, 1, 0, std::nullopt, finish_reason::length});
  const auto stored = only<store_response>(router.take_actions());
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].key.prompt, request(5, 2).prompt);
  EXPECT_EQ(stored[0].response.tokens, (std::vector<std::int32_t>{40, 41}));
  EXPECT_EQ(stored[0].key_hash, cache::key_hash(stored[0].key));
}

TEST(RequestRouter, RandomReplicaStormsKeepTheContract) {
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    xoshiro256 rng(seed);
    auto c = config(3);
    c.breaker.window_requests_min = 4;
    c.breaker.open_ms = milliseconds(50);
    request_router router(c, &tiny_tokenizer());
    clock_time now{};
    for (int i = 0; i < 3; ++i) router.on_replica_up(now, i);
    struct attempt_state { std::uint32_t attempt; std::int32_t replica; std::int64_t left; };
    std::map<std::uint64_t, attempt_state> live;        // the replicas' view
    std::map<std::uint64_t, std::uint32_t> next_seq;    // the clients' view
    std::map<std::uint64_t, int> finals;
    const std::uint64_t requests = 40;
    auto drain = [&] {
      for (auto& action : router.take_actions()) {
        if (auto* s = std::get_if<send_request>(&action)) {
          live[s->request.request_id] = {s->request.attempt, s->replica, s->request.sequence.max_new_tokens};
        } else if (auto* ch = std::get_if<send_chunk>(&action)) {
          const auto id = ch->chunk.request_id;
          ASSERT_EQ(finals[id], 0) << "chunk after the final, request " << id << " seed " << seed;
          ASSERT_EQ(ch->chunk.sequence, next_seq[id]++) << "request " << id << " seed " << seed;
        } else if (auto* f = std::get_if<send_final>(&action)) {
          ++finals[f->final.request_id];
          live.erase(f->final.request_id);
        } else if (auto* l = std::get_if<lookup_response>(&action)) {
          router.on_cached(now, l->request_id, std::nullopt);
        }
      }
    };
    for (std::uint64_t id = 1; id <= requests; ++id) {
      router.on_generate(now, request(id, 1 + std::int32_t(rng.next() % 12)));
      drain();
    }
    for (int step = 0; step < 5000 && !live.empty(); ++step) {
      now += milliseconds(1 + rng.next() % 5);
      const auto roll = rng.next() % 100;
      auto it = live.begin();
      std::advance(it, std::ptrdiff_t(rng.next() % live.size()));
      auto& [id, a] = *it;
      if (roll < 60) {   // the replica streams a token
        router.on_chunk(now, {id, a.attempt, a.replica, {std::int32_t(10 + rng.next() % 100)}});
        if (--a.left == 0) router.on_final(now, {id, a.attempt, a.replica, std::nullopt, finish_reason::length});
      } else if (roll < 70) {
        router.on_final(now, {id, a.attempt, a.replica, make_error(error_code::internal, "step"), finish_reason::length});
      } else if (roll < 75) {
        router.on_replica_down(now, a.replica);
        router.on_replica_up(now, a.replica);   // restarted
      } else if (roll < 78) {
        router.on_cancel(now, id);
      }
      drain();
    }
    ASSERT_TRUE(live.empty()) << "requests left without a final, seed " << seed;
    for (std::uint64_t id = 1; id <= requests; ++id) EXPECT_EQ(finals[id], 1) << "request " << id << " seed " << seed;
    EXPECT_EQ(router.routes(), 0u) << "seed " << seed;
    for (int i = 0; i < 3; ++i)
      for (const auto& t : router.breaker(i).transitions()) {
        const bool legal = (t.from == policy::breaker_state::closed && t.to == policy::breaker_state::open) ||
                           (t.from == policy::breaker_state::open && t.to == policy::breaker_state::half_open) ||
                           (t.from == policy::breaker_state::half_open && t.to != policy::breaker_state::half_open);
        EXPECT_TRUE(legal) << "seed " << seed;
      }
  }
}

}  // namespace
}  // namespace dsrt::serving
