// serving::token_streams, the batcher's output side: which tokens go to the router in
// which chunks (the first alone, then one chunk per stream_interval_tokens, the rest at the
// end), finals after their last chunk, and what a failed step, a stopped sequence or a
// replaced attempt sends.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/serving/token_streams.h"

namespace dsrt::serving {
namespace {

constexpr std::int32_t replica = 3;

class TokenStreams : public ::testing::Test {
 public:
  // A scheduler with room for a few sequences and one prefill step for each prompt.
  batching::batch_scheduler scheduler{[] {
    batching::scheduler_config c;
    c.batch_wait_ms = milliseconds(0);
    return c;
  }(), 64, 4};
  clock_time now{};

  void submit(token_streams& streams, std::uint64_t id, std::uint32_t attempt, std::int64_t max_new,
              std::vector<std::int32_t> stops = {}) {
    batching::sequence_request r;
    r.id = id;
    r.tokens = {1, 2, 3};
    r.max_new_tokens = max_new;
    ASSERT_TRUE(scheduler.submit(now, r).ok());
    streams.open(id, attempt, max_new, std::move(stops));
  }
  // One step; each sampling sequence samples token(id, k) for its k-th sample.
  stream_output step(token_streams& streams, std::int32_t (*token)(std::uint64_t, std::int64_t)) {
    auto plan = scheduler.schedule(now);
    std::vector<std::int32_t> sampled;
    for (const auto& p : plan.sequences)
      if (p.sample) sampled.push_back(token(p.id, p.draw_index));
    stream_output out;
    streams.on_step(scheduler, plan, sampled, out);
    scheduler.recycle(std::move(plan));
    return out;
  }
};

std::int32_t draw_plus_100(std::uint64_t, std::int64_t draw) { return std::int32_t(100 + draw); }

// The chunks of one request over steps until its final, as token lists.
struct streamed {
  std::vector<std::vector<std::int32_t>> chunks;
  std::vector<replica_final> finals;
  int steps = 0;
};

streamed run_to_final(TokenStreams& t, token_streams& streams, std::uint64_t id,
                      std::int32_t (*token)(std::uint64_t, std::int64_t) = draw_plus_100) {
  streamed s;
  while (s.finals.empty() && s.steps < 100) {
    auto out = t.step(streams, token);
    ++s.steps;
    for (const auto& c : out.chunks.chunks) {
      EXPECT_EQ(c.request_id, id);
      EXPECT_EQ(c.replica, replica);
      s.chunks.push_back(c.tokens);
    }
    for (const auto& f : out.finals) s.finals.push_back(f);
  }
  return s;
}

TEST_F(TokenStreams, IntervalOneSendsEveryTokenAsItComes) {
  token_streams streams(replica, 1);
  submit(streams, 1, 0, 3);
  const auto s = run_to_final(*this, streams, 1);
  EXPECT_EQ(s.chunks, (std::vector<std::vector<std::int32_t>>{{100}, {101}, {102}}));
  ASSERT_EQ(s.finals.size(), 1u);
  EXPECT_FALSE(s.finals[0].failure);
  EXPECT_EQ(s.finals[0].reason, finish_reason::length);
  EXPECT_EQ(streams.size(), 0u);
  EXPECT_FALSE(scheduler.has_sequence(1));
}

TEST_F(TokenStreams, TheFirstTokenGoesAloneThenOneChunkPerIntervalAndTheRestWithTheFinal) {
  token_streams streams(replica, 4);
  submit(streams, 1, 2, 10);
  const auto s = run_to_final(*this, streams, 1);
  EXPECT_EQ(s.chunks, (std::vector<std::vector<std::int32_t>>{
                          {100}, {101, 102, 103, 104}, {105, 106, 107, 108}, {109}}));
  ASSERT_EQ(s.finals.size(), 1u);
  EXPECT_EQ(s.finals[0].attempt, 2u);
  EXPECT_EQ(s.finals[0].replica, replica);
}

TEST_F(TokenStreams, TheLastChunkTravelsWithItsFinal) {
  token_streams streams(replica, 8);
  submit(streams, 1, 0, 3);
  EXPECT_EQ(step(streams, draw_plus_100).chunks.chunks.size(), 1u);   // the first token
  auto second = step(streams, draw_plus_100);
  EXPECT_TRUE(second.empty()) << "one unsent token waits for more";
  auto last = step(streams, draw_plus_100);
  ASSERT_EQ(last.chunks.chunks.size(), 1u);
  EXPECT_EQ(last.chunks.chunks[0].tokens, (std::vector<std::int32_t>{101, 102}));
  ASSERT_EQ(last.finals.size(), 1u);   // sent after the chunks by the caller
}

std::int32_t stop_at_draw_3(std::uint64_t, std::int64_t draw) { return draw == 3 ? 7 : std::int32_t(100 + draw); }

TEST_F(TokenStreams, AStopTokenSendsWhatWaitedAndEndsWithStopWithoutItself) {
  token_streams streams(replica, 8);
  submit(streams, 1, 0, 10, {7});
  const auto s = run_to_final(*this, streams, 1, stop_at_draw_3);
  EXPECT_EQ(s.chunks, (std::vector<std::vector<std::int32_t>>{{100}, {101, 102}}));
  ASSERT_EQ(s.finals.size(), 1u);
  EXPECT_EQ(s.finals[0].reason, finish_reason::stop);
  EXPECT_FALSE(scheduler.has_sequence(1));
}

// A stream keeps up to 8 unsent tokens and 2 stop tokens in its first cache line; an
// interval or a stop list beyond that goes to vectors and streams the same.
TEST_F(TokenStreams, LongIntervalsAndLongStopListsStreamTheSame) {
  token_streams streams(replica, 12);
  submit(streams, 1, 0, 30, {5, 6, 7});   // the third stop token ends it
  const auto s = run_to_final(*this, streams, 1, [](std::uint64_t, std::int64_t draw) {
    return draw == 20 ? 7 : std::int32_t(100 + draw);
  });
  std::vector<std::vector<std::int32_t>> expected{{100}, {}, {}};
  for (int d = 1; d <= 12; ++d) expected[1].push_back(100 + d);
  for (int d = 13; d <= 19; ++d) expected[2].push_back(100 + d);
  EXPECT_EQ(s.chunks, expected);
  ASSERT_EQ(s.finals.size(), 1u);
  EXPECT_EQ(s.finals[0].reason, finish_reason::stop);

  token_streams inline_room(replica, 8);
  submit(inline_room, 2, 0, 5, {4, 9});   // both stop tokens fit inline; neither comes
  const auto t = run_to_final(*this, inline_room, 2);
  EXPECT_EQ(t.chunks, (std::vector<std::vector<std::int32_t>>{{100}, {101, 102, 103, 104}}));
  ASSERT_EQ(t.finals.size(), 1u);
  EXPECT_EQ(t.finals[0].reason, finish_reason::length);
}

TEST_F(TokenStreams, AFailedStepSendsWhatEarlierStepsSampledThenItsError) {
  token_streams streams(replica, 8);
  submit(streams, 1, 4, 10);
  submit(streams, 2, 0, 10);
  for (int k = 0; k < 3; ++k) step(streams, draw_plus_100);   // 100 sent; 101, 102 wait
  auto plan = scheduler.schedule(now);
  stream_output out;
  streams.on_failed_step(scheduler, plan, make_error(error_code::internal, "step failed"), out);
  // The failed step sampled nothing; the tokens before it are sound and go first.
  ASSERT_EQ(out.chunks.chunks.size(), 2u);
  EXPECT_EQ(out.chunks.chunks[0].request_id, 1u);
  EXPECT_EQ(out.chunks.chunks[0].attempt, 4u);
  EXPECT_EQ(out.chunks.chunks[0].tokens, (std::vector<std::int32_t>{101, 102}));
  EXPECT_EQ(out.chunks.chunks[1].request_id, 2u);
  ASSERT_EQ(out.finals.size(), 2u);
  EXPECT_EQ(out.finals[0].request_id, 1u);
  EXPECT_EQ(out.finals[0].attempt, 4u);
  ASSERT_TRUE(out.finals[0].failure);
  EXPECT_EQ(out.finals[0].failure->code, error_code::internal);
  EXPECT_FALSE(scheduler.has_sequence(1));
  EXPECT_EQ(streams.size(), 0u);
}

TEST_F(TokenStreams, AStoppedSequenceSendsWhatWaitedBeforeItsFinal) {
  token_streams streams(replica, 8);
  submit(streams, 1, 0, 10);
  for (int k = 0; k < 3; ++k) step(streams, draw_plus_100);   // 100 sent; 101, 102 wait
  scheduler.cancel(1);
  auto plan = scheduler.schedule(now);
  ASSERT_EQ(plan.stopped.size(), 1u);
  stream_output out;
  streams.stop(1, make_error(error_code::cancelled, "cancelled"), out);
  ASSERT_EQ(out.chunks.chunks.size(), 1u);
  EXPECT_EQ(out.chunks.chunks[0].tokens, (std::vector<std::int32_t>{101, 102}));
  ASSERT_EQ(out.finals.size(), 1u);
  EXPECT_EQ(out.finals[0].failure->code, error_code::cancelled);
  stream_output again;
  streams.stop(1, make_error(error_code::cancelled, "cancelled"), again);
  EXPECT_TRUE(again.empty()) << "one final per attempt";
}

TEST_F(TokenStreams, StreamsOfOneStepShareItsMessageAndEndAtTheirOwnLengths) {
  token_streams streams(replica, 2);
  submit(streams, 1, 0, 1);    // one token: its first chunk and its final together
  submit(streams, 2, 0, 4, {100});   // its first token is a stop token: no chunk at all
  submit(streams, 3, 0, 3);
  auto first = step(streams, draw_plus_100);
  ASSERT_EQ(first.chunks.chunks.size(), 2u);
  EXPECT_EQ(first.chunks.chunks[0].request_id, 1u);
  EXPECT_EQ(first.chunks.chunks[0].tokens, (std::vector<std::int32_t>{100}));
  EXPECT_EQ(first.chunks.chunks[1].request_id, 3u);
  ASSERT_EQ(first.finals.size(), 2u);
  EXPECT_EQ(first.finals[0].request_id, 1u);
  EXPECT_EQ(first.finals[0].reason, finish_reason::length);
  EXPECT_EQ(first.finals[1].request_id, 2u);
  EXPECT_EQ(first.finals[1].reason, finish_reason::stop);
  EXPECT_TRUE(step(streams, draw_plus_100).empty());   // 101 waits for a second token
  auto last = step(streams, draw_plus_100);
  ASSERT_EQ(last.chunks.chunks.size(), 1u);
  EXPECT_EQ(last.chunks.chunks[0].tokens, (std::vector<std::int32_t>{101, 102}));
  ASSERT_EQ(last.finals.size(), 1u);
  EXPECT_EQ(streams.size(), 0u);
}

TEST_F(TokenStreams, ASequenceReplacedDuringItsStepSendsNothingForIt) {
  token_streams streams(replica, 1);
  submit(streams, 1, 0, 10);
  auto plan = scheduler.schedule(now);
  // A newer attempt arrives while the step runs: the old sequence goes, a new one comes.
  scheduler.fail(1);
  streams.close(1, std::nullopt);
  submit(streams, 1, 1, 10);
  stream_output out;
  streams.on_step(scheduler, plan, std::vector<std::int32_t>{100}, out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(streams.attempt(1), 1u);
  EXPECT_EQ(scheduler.generated(1), 0);
}

TEST_F(TokenStreams, CloseGivesTheFinalOfTheOpenAttemptOnce) {
  token_streams streams(replica, 1);
  streams.open(5, 3, 10, {});
  streams.open(5, 4, 10, {});   // replaces attempt 3
  auto f = streams.close(5, make_error(error_code::cancelled, "cancelled"));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->attempt, 4u);
  EXPECT_EQ(f->replica, replica);
  ASSERT_TRUE(f->failure);
  EXPECT_EQ(f->failure->code, error_code::cancelled);
  EXPECT_FALSE(streams.close(5, std::nullopt));
  EXPECT_FALSE(streams.attempt(5));
}

TEST(StreamIntervalTokens, IsValidatedWithTheSchedulerConfig) {
  batching::scheduler_config c;
  for (int bad : {0, -1, batching::stream_interval_tokens_max + 1}) {
    c.stream_interval_tokens = bad;
    const auto s = batching::validate(c);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.err().code, error_code::invalid_argument);
    EXPECT_NE(s.err().message.find("stream_interval_tokens"), std::string::npos);
  }
  c.stream_interval_tokens = batching::stream_interval_tokens_max;
  EXPECT_TRUE(batching::validate(c).ok());
  // One step's chunks are one message: sequences_max x interval is bounded by the wire's
  // tokens per message.
  c.sequences_max = c.step_tokens_max = 4096;
  const auto s = batching::validate(c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.err().message.find("sequences_max (4096) x stream_interval_tokens (1024)"), std::string::npos)
      << s.err().message;
  c.stream_interval_tokens = 256;
  EXPECT_TRUE(batching::validate(c).ok());
}

}  // namespace
}  // namespace dsrt::serving
