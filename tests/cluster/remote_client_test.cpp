// The remote client against a head that misbehaves: a fake head (a raw ucx_transport in the
// head's role) answers the client's requests with whatever frames a test gives it. Whatever
// the head sends, the app sees the request contract — chunks 0, 1, 2, ... without gaps or
// repeats, exactly one final — and the client reconnects afterwards; a request the head
// never answers ends at its deadline; a request the wire would alter is refused here.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "actors/blocking_ask.h"
#include "actors/client.h"
#include "actors/remote_runtime.h"
#include "tests/actors/runtime_test_util.h"
#include "tests/cluster/transport_recorder.h"
#include "tests/engine/engine_test_util.h"
#include "transport/wire.h"

namespace dsrt::actors {
namespace {

using transport::frame_type;
using transport::test::recorder;

transport::cluster_secret secret() {
  transport::cluster_secret s;
  s.fill(std::byte{4});
  return s;
}

// A listening transport in the head's role and a remote_runtime connected to it (members in
// this order: the transports go before their handlers).
struct fake_head {
  recorder rec;
  std::unique_ptr<transport::ucx_transport> head;
  std::unique_ptr<remote_runtime> remote;

  explicit fake_head(remote_options options = quick()) {
    start_head(0);
    if (!head) return;
    auto tok = std::make_shared<tokenizer::tokenizer>(
        engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir()));
    auto r = remote_runtime::connect("dsrt://127.0.0.1:" + std::to_string(head->port()), secret(), tok, options);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    if (r) remote = std::move(*r);
  }
  // The head listening on `port` (0: a free one), with a clean record.
  void start_head(std::uint16_t port) {
    {
      std::lock_guard lock(rec.mu_);
      rec.up_.clear();
      rec.ids_.clear();
      rec.generates_.clear();
      rec.other_.clear();
      rec.down_.clear();
      rec.tensors_.clear();
    }
    transport::transport_config c;
    c.listen_port = port;
    c.session.heartbeat_interval_ms = milliseconds(100);
    c.session.heartbeat_timeout_ms = milliseconds(2000);
    auto h = transport::ucx_transport::start(c, secret(), {transport::node_role::head, 0, 1}, rec);
    EXPECT_TRUE(h.ok()) << (h.ok() ? "" : h.err().to_string());
    if (h) head = std::move(*h);
  }
  // The head goes (a head process that died) and the client notices.
  void stop_head() {
    head.reset();
    EXPECT_TRUE(wait_until(milliseconds(10000), "the client notices", [&] {
                  auto s = remote->stats();
                  return s && !s->connected;
                }).ok());
  }
  ~fake_head() {
    remote.reset();
    head.reset();
  }
  static remote_options quick() {
    remote_options o;
    o.transport.session.heartbeat_interval_ms = milliseconds(100);
    o.transport.session.heartbeat_timeout_ms = milliseconds(2000);
    o.reconnect_interval_ms = milliseconds(50);
    return o;
  }

  // The client's connection (the latest one) and the id of the `n`th request it sent on it.
  std::pair<transport::peer_id, std::uint64_t> request(std::size_t n) {
    transport::peer_id peer = 0;
    std::uint64_t id = 0;
    EXPECT_TRUE(rec.wait([&](recorder& r) {
      for (const auto& [p, ids] : r.generates_)
        if (r.down_.count(p) == 0 && ids.size() > n) {
          peer = p;
          id = std::uint64_t(ids[n]);
          return true;
        }
      return false;
    })) << "request " << n << " never reached the head";
    return {peer, id};
  }
  void chunk(transport::peer_id peer, std::uint64_t id, std::uint32_t sequence, std::vector<std::int32_t> tokens) {
    ASSERT_TRUE(head->send(peer, transport::encode(serving::token_chunk{id, sequence, std::move(tokens), ""})).ok());
  }
  void final(transport::peer_id peer, std::uint64_t id, std::uint32_t chunks_sent, std::vector<std::int32_t> tokens) {
    serving::final_message f;
    f.request_id = id;
    f.chunks_sent = chunks_sent;
    f.completion_tokens = std::uint32_t(tokens.size());
    f.tokens = std::move(tokens);
    ASSERT_TRUE(head->send(peer, transport::encode(f)).ok());
  }
  // The head closes the client's connection and has seen it go.
  void drop(transport::peer_id peer) {
    head->close(peer, "test: the head drops its client");
    EXPECT_TRUE(rec.wait([peer](recorder& r) { return r.down_.count(peer) > 0; })) << "the connection stayed";
  }
  bool wait_reconnected(std::int64_t connects) {
    return wait_until(milliseconds(20000), "the client reconnects", [&] {
             auto s = remote->stats();
             return s && s->connected && s->connects >= connects;
           }).ok();
  }
};

client_request prompt_request(int max_tokens = 8) {
  client_request r;
  r.prompt_tokens = {1, 2, 3};
  r.max_tokens = max_tokens;
  return r;
}

// Sends what `misbehave` makes the head send for one request and checks that the app got
// a contract-keeping stream ending in UNAVAILABLE, that the client counted the violation,
// and that it reconnects and serves again.
template <class F>
void expect_refused_stream(F misbehave, int max_tokens = 8) {
  fake_head h;
  ASSERT_TRUE(h.remote);
  client c(*h.remote);
  test::collector col;
  ASSERT_TRUE(c.submit(prompt_request(max_tokens), col.on_chunk(0), col.on_final(0)).ok());
  const auto [peer, id] = h.request(0);
  misbehave(h, peer, id);
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  col.expect_contract();
  const auto rec = col.records().at(0);
  ASSERT_TRUE(rec.final.failure);
  EXPECT_EQ(rec.final.failure->code, error_code::unavailable) << rec.final.failure->to_string();
  EXPECT_NE(rec.final.failure->message.find("broke the protocol"), std::string::npos) << rec.final.failure->message;
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->protocol_violations, 1);
  EXPECT_EQ(s->open_requests, 0);
  // The next connection serves a well-behaved exchange.
  ASSERT_TRUE(h.wait_reconnected(2));
  test::collector again;
  ASSERT_TRUE(c.submit(prompt_request(), again.on_chunk(1), again.on_final(1)).ok());
  const auto [peer2, id2] = h.request(0);
  EXPECT_NE(peer2, peer);
  h.chunk(peer2, id2, 0, {7});
  h.final(peer2, id2, 1, {7});
  ASSERT_TRUE(again.wait_finals(1, std::chrono::seconds(20)));
  again.expect_contract();
  EXPECT_FALSE(again.records().at(1).final.failure);
}

TEST(RemoteClient, AChunkThatSkipsASequenceNumberEndsTheRequestWithoutAGap) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    h.chunk(p, id, 0, {5});
    h.chunk(p, id, 2, {6});
    h.final(p, id, 3, {5, 6, 7});
  });
}

TEST(RemoteClient, ARepeatedChunkEndsTheRequestWithoutADuplicate) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    h.chunk(p, id, 0, {5});
    h.chunk(p, id, 0, {5});
    h.final(p, id, 2, {5, 5});
  });
}

TEST(RemoteClient, AFinalThatMiscountsTheChunksIsRefused) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    h.chunk(p, id, 0, {5});
    h.final(p, id, 2, {5});
  });
}

TEST(RemoteClient, MoreTokensThanMaxTokensAreRefused) {
  expect_refused_stream(
      [](fake_head& h, transport::peer_id p, std::uint64_t id) {
        h.chunk(p, id, 0, {5, 6});
        h.chunk(p, id, 1, {7, 8});   // 4 tokens for max_tokens 3
        h.final(p, id, 2, {5, 6, 7, 8});
      },
      3);
}

// An unreadable chunk in the middle: what the head queued behind it (chunk 2 and a final
// that counts it) must not reach the app, which would see chunks 0 and 2 and a success.
TEST(RemoteClient, NothingQueuedBehindAnUnreadableChunkIsDelivered) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    h.chunk(p, id, 0, {5});
    h.chunk(p, id, 1, {-1});   // a negative token id does not decode
    h.chunk(p, id, 2, {7});
    h.final(p, id, 3, {5, 6, 7});
  });
}

TEST(RemoteClient, AFrameAHeadNeverSendsAClientIsRefused) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    ASSERT_TRUE(h.head->send(p, transport::encode_cancel(frame_type::cancel, id)).ok());
  });
}

TEST(RemoteClient, ATensorFromTheHeadIsRefused) {
  expect_refused_stream([](fake_head& h, transport::peer_id p, std::uint64_t id) {
    h.chunk(p, id, 0, {5});
    auto data = std::make_shared<std::vector<std::byte>>(64, std::byte{1});
    ASSERT_TRUE(h.head->send_tensor(p, {1, 0, 0, {64}}, data, *data).ok());
    // Tensors are not ordered with frames (ucx_transport.h): nothing more until it landed.
    ASSERT_TRUE(h.rec.wait([p](recorder& r) { return r.down_.count(p) > 0; })) << "the client kept the connection";
  });
}

// Bad input is refused as such even while the head is away (no retry hint on a request
// that can never succeed), and bad options are refused at connect().
TEST(RemoteClient, BadRequestsAndOptionsAreInvalidWhateverTheConnection) {
  auto options = fake_head::quick();
  options.head_wait_ms = milliseconds(0);   // no wait for the head: UNAVAILABLE at once
  fake_head h(options);
  ASSERT_TRUE(h.remote);
  h.stop_head();
  client c(*h.remote);
  auto bad = prompt_request();
  bad.priority = 300;
  const auto f = c.generate(bad);
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::invalid_argument) << f.failure->to_string();
  EXPECT_EQ(f.retry_after_ms, 0u);
  const auto good = c.generate(prompt_request());
  ASSERT_TRUE(good.failure);
  EXPECT_EQ(good.failure->code, error_code::unavailable) << good.failure->to_string();
  for (auto set : std::vector<std::function<void(remote_options&)>>{
           [](remote_options& o) { o.final_grace_ms = milliseconds(-1); },
           [](remote_options& o) { o.expiry_check_ms = milliseconds(0); },
           [](remote_options& o) { o.open_requests_max = 0; },
           [](remote_options& o) { o.head_wait_ms = milliseconds(-1); },
           [](remote_options& o) { o.bridge.peer_messages_max = 0; }}) {
    auto o = fake_head::quick();
    set(o);
    auto r = remote_runtime::connect("dsrt://127.0.0.1:1", secret(), nullptr, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.err().code, error_code::invalid_argument) << r.err().to_string();
  }
}

// A request made while the head is away (a head node restarting, say) waits for the next
// connection and is served on it.
TEST(RemoteClient, ARequestMadeWhileTheHeadIsAwayWaitsForItsReturn) {
  fake_head h;
  ASSERT_TRUE(h.remote);
  const auto port = h.head->port();
  h.stop_head();
  client c(*h.remote);
  test::collector col;
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(wait_until(milliseconds(10000), "the request waits", [&] {
                auto s = h.remote->stats();
                return s && s->waiting_requests == 1;
              }).ok());
  h.start_head(port);
  ASSERT_TRUE(h.head);
  const auto [peer, id] = h.request(0);
  h.chunk(peer, id, 0, {5});
  h.final(peer, id, 1, {5});
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  col.expect_contract();
  const auto f = col.records().at(0).final;
  EXPECT_FALSE(f.failure) << f.failure->to_string();
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->connects, 2);
  EXPECT_EQ(s->waiting_requests, 0);
  EXPECT_EQ(s->open_requests, 0);
  EXPECT_EQ(s->resent, 0);
}

// The head drops the connection (it judged this client silent, say): a request that had
// streamed output ends with UNAVAILABLE (the app holds part of it), one that had none is
// sent again on the next connection and served there, at most resends_max times.
TEST(RemoteClient, AnOpenRequestWithoutOutputIsSentAgainOnTheNextConnection) {
  fake_head h;
  ASSERT_TRUE(h.remote);
  client c(*h.remote);
  test::collector col;
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(0), col.on_final(0)).ok());
  const auto [peer, streamed] = h.request(0);   // in order: two request actors race
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(1), col.on_final(1)).ok());
  const auto [same_peer, silent] = h.request(1);
  ASSERT_EQ(peer, same_peer);
  h.chunk(peer, streamed, 0, {5});
  ASSERT_TRUE(col.wait_chunks(1, std::chrono::seconds(20)));
  h.drop(peer);
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  auto first = col.records().at(0).final;
  ASSERT_TRUE(first.failure);
  EXPECT_EQ(first.failure->code, error_code::unavailable) << first.failure->to_string();
  EXPECT_EQ(first.chunks_sent, 1u);
  // The silent one reaches the head again, on a new connection, under its id.
  const auto [peer2, again] = h.request(0);
  EXPECT_NE(peer2, peer);
  EXPECT_EQ(again, silent);
  h.final(peer2, again, 0, {});
  ASSERT_TRUE(col.wait_finals(2, std::chrono::seconds(20)));
  EXPECT_FALSE(col.records().at(1).final.failure);
  // Sent again once (resends_max 1), lost again: it ends.
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(2), col.on_final(2)).ok());
  const auto [peer3, third] = h.request(1);
  ASSERT_EQ(peer3, peer2);
  h.drop(peer3);
  const auto [peer4, third_again] = h.request(0);
  EXPECT_EQ(third_again, third);
  h.drop(peer4);
  ASSERT_TRUE(col.wait_finals(3, std::chrono::seconds(20)));
  col.expect_contract();
  const auto last = col.records().at(2).final;
  ASSERT_TRUE(last.failure);
  EXPECT_EQ(last.failure->code, error_code::unavailable) << last.failure->to_string();
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->resent, 2);
  EXPECT_EQ(s->open_requests, 0);
  EXPECT_EQ(s->waiting_requests, 0);
}

// A request the app cancelled, and one past its deadline, are not sent again when the
// connection goes before the head's final: they end CANCELLED and DEADLINE_EXCEEDED (with
// resends left or none), and the next connection never sees them.
void expect_cancelled_and_late_not_sent_again(std::uint32_t resends_max) {
  SCOPED_TRACE("resends_max " + std::to_string(resends_max));
  auto options = fake_head::quick();
  options.resends_max = resends_max;
  options.final_grace_ms = milliseconds(60000);   // only the lost connection ends them
  fake_head h(options);
  ASSERT_TRUE(h.remote);
  client c(*h.remote);
  test::collector col;
  const auto cancelled = c.submit(prompt_request(), col.on_chunk(0), col.on_final(0));
  ASSERT_TRUE(cancelled.ok());
  const auto [peer, first] = h.request(0);
  auto late = prompt_request();
  late.timeout = milliseconds(200);
  ASSERT_TRUE(c.submit(late, col.on_chunk(1), col.on_final(1)).ok());
  const auto [same_peer, second] = h.request(1);
  ASSERT_EQ(peer, same_peer);
  c.cancel(*cancelled);
  ASSERT_TRUE(h.rec.wait([&, p = peer](recorder& r) { return r.ids_.count(p) > 0; })) << "no cancel reached the head";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));   // past the second one's deadline
  h.drop(peer);
  ASSERT_TRUE(col.wait_finals(2, std::chrono::seconds(20)));
  col.expect_contract();
  const auto records = col.records();
  ASSERT_TRUE(records.at(0).final.failure);
  EXPECT_EQ(records.at(0).final.failure->code, error_code::cancelled) << records.at(0).final.failure->to_string();
  ASSERT_TRUE(records.at(1).final.failure);
  EXPECT_EQ(records.at(1).final.failure->code, error_code::deadline_exceeded) << records.at(1).final.failure->to_string();
  // The next connection carries only a new request.
  test::collector next;
  ASSERT_TRUE(c.submit(prompt_request(), next.on_chunk(2), next.on_final(2)).ok());
  const auto [peer2, id] = h.request(0);
  EXPECT_NE(peer2, peer);
  EXPECT_NE(id, first);
  EXPECT_NE(id, second);
  h.final(peer2, id, 0, {});
  ASSERT_TRUE(next.wait_finals(1, std::chrono::seconds(20)));
  EXPECT_FALSE(next.records().at(2).final.failure);
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->resent, 0);
}

TEST(RemoteClient, ARequestCancelledOrPastItsDeadlineIsNotSentAgain) {
  expect_cancelled_and_late_not_sent_again(1);
  expect_cancelled_and_late_not_sent_again(0);
}

// A wait for the head ends after head_wait_ms with UNAVAILABLE (and a retry hint), at the
// request's deadline if that comes first, and at once when the request is cancelled;
// waiting requests count against open_requests_max.
TEST(RemoteClient, AWaitForTheHeadEndsAtHeadWaitMsItsDeadlineOrACancel) {
  auto options = fake_head::quick();
  options.head_wait_ms = milliseconds(3000);
  options.open_requests_max = 3;
  fake_head h(options);
  ASSERT_TRUE(h.remote);
  h.stop_head();
  client c(*h.remote);
  test::collector col;
  auto soon = prompt_request();
  soon.timeout = milliseconds(1500);   // before head_wait_ms ends
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(c.submit(soon, col.on_chunk(1), col.on_final(1)).ok());
  const auto cancelled = c.submit(prompt_request(), col.on_chunk(2), col.on_final(2));
  ASSERT_TRUE(cancelled.ok());
  ASSERT_TRUE(wait_until(milliseconds(10000), "three requests wait", [&] {
                auto s = h.remote->stats();
                return s && s->waiting_requests == 3;
              }).ok());
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(3), col.on_final(3)).ok());   // a fourth: too many
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  c.cancel(*cancelled);
  ASSERT_TRUE(col.wait_finals(4, std::chrono::seconds(20)));
  col.expect_contract();
  const auto records = col.records();
  const auto code = [&](int key) { return records.at(key).final.failure ? records.at(key).final.failure->code : error_code::internal; };
  ASSERT_TRUE(records.at(0).final.failure);
  EXPECT_EQ(code(0), error_code::unavailable);
  EXPECT_NE(records.at(0).final.failure->message.find("head_wait_ms"), std::string::npos)
      << records.at(0).final.failure->message;
  EXPECT_GT(records.at(0).final.retry_after_ms, 0u);
  EXPECT_EQ(code(1), error_code::deadline_exceeded);
  EXPECT_EQ(code(2), error_code::cancelled);
  EXPECT_EQ(code(3), error_code::overloaded) << records.at(3).final.failure->to_string();
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->waiting_requests, 0);
}

// The head accepted the request and says nothing more (its router stuck, say): the
// request ends at its deadline plus the grace, the head hears a cancel, the slot is free.
TEST(RemoteClient, ARequestTheHeadNeverAnswersEndsAfterItsDeadline) {
  auto options = fake_head::quick();
  options.final_grace_ms = milliseconds(200);
  fake_head h(options);
  ASSERT_TRUE(h.remote);
  client c(*h.remote);
  auto r = prompt_request();
  r.timeout = milliseconds(300);
  test::collector col;
  ASSERT_TRUE(c.submit(r, col.on_chunk(0), col.on_final(0)).ok());
  const auto [peer, id] = h.request(0);
  h.chunk(peer, id, 0, {5});
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  col.expect_contract();
  const auto f = col.records().at(0).final;
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::deadline_exceeded) << f.failure->to_string();
  EXPECT_EQ(f.chunks_sent, 1u);
  ASSERT_TRUE(h.rec.wait([&, p = peer, i = id](recorder& rec) {
    return rec.ids_.count(p) && rec.ids_.at(p) == std::vector<std::int64_t>{std::int64_t(i)};
  })) << "the head was not told to cancel it";
  auto s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->expired, 1);
  EXPECT_EQ(s->open_requests, 0);
  EXPECT_TRUE(s->connected);
  // The head's late answer is dropped (the app has its one final) and breaks nothing: a
  // request answered after it, on the same connection, completes.
  h.final(peer, id, 1, {5});
  test::collector next;
  ASSERT_TRUE(c.submit(prompt_request(), next.on_chunk(1), next.on_final(1)).ok());
  const auto [peer2, id2] = h.request(1);
  EXPECT_EQ(peer2, peer);
  h.final(peer2, id2, 0, {});
  ASSERT_TRUE(next.wait_finals(1, std::chrono::seconds(20)));
  EXPECT_FALSE(next.records().at(1).final.failure);
  col.expect_contract();
  s = h.remote->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->protocol_violations, 0);
}

// What the wire would alter or the head could not read is refused here, in the router's
// words, and never sent.
TEST(RemoteClient, RequestsTheWireWouldAlterAreRefusedBeforeSending) {
  fake_head h;
  ASSERT_TRUE(h.remote);
  client c(*h.remote);
  struct bad_case {
    const char* what;
    std::function<void(client_request&)> make_bad;
  };
  const std::vector<bad_case> cases = {
      {"priority -1 is outside 0 .. 255", [](client_request& r) { r.priority = -1; }},
      {"priority 256 is outside 0 .. 255", [](client_request& r) { r.priority = 256; }},
      {"max_tokens -5 is below 1", [](client_request& r) { r.max_tokens = -5; }},
      {"max_tokens 0 is below 1", [](client_request& r) { r.max_tokens = 0; }},
      {"top_k -1 is negative", [](client_request& r) { r.sampling.top_k = -1; }},
      {"temperature nan is outside [0, 100]", [](client_request& r) { r.sampling.temperature = std::nanf(""); }},
      {"prompt token -3 is negative", [](client_request& r) { r.prompt_tokens = {1, -3}; }},
      {"17 stop strings, at most 16", [](client_request& r) { r.stop.assign(17, "a"); }},
      {"stop strings must have 1 to 256 bytes", [](client_request& r) { r.stop = {std::string(257, 'a')}; }},
      {"the tenant has 300 bytes, at most 256", [](client_request& r) { r.tenant = std::string(300, 't'); }},
  };
  for (const auto& bad : cases) {
    auto r = prompt_request();
    bad.make_bad(r);
    const auto f = c.generate(r);
    ASSERT_TRUE(f.failure) << bad.what;
    EXPECT_EQ(f.failure->code, error_code::invalid_argument) << f.failure->to_string();
    EXPECT_NE(f.failure->message.find(bad.what), std::string::npos) << f.failure->message;
  }
  // A good request after them is the first the head sees.
  test::collector col;
  ASSERT_TRUE(c.submit(prompt_request(), col.on_chunk(0), col.on_final(0)).ok());
  const auto [peer, id] = h.request(0);
  h.final(peer, id, 0, {});
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(20)));
  std::lock_guard lock(h.rec.mu_);
  EXPECT_EQ(h.rec.generates_.at(peer).size(), 1u) << "a refused request reached the head";
}

}  // namespace
}  // namespace dsrt::actors
