// A cluster in one process: a head node, worker nodes (tiny-llama replicas) and a remote
// client, each with its own actor system and UCX transport, talking over loopback. The
// outputs equal the single-process runtime's; a worker lost under load costs no request
// its one final; hostile clients are refused while the cluster keeps serving.
#include <gtest/gtest.h>

#include "actors/blocking_ask.h"
#include "actors/client.h"
#include "actors/cluster_node.h"
#include "actors/id_text.h"
#include "actors/remote_runtime.h"
#include "runtime/serving/step_executor.h"
#include "tests/cluster/transport_recorder.h"
#include "tests/actors/runtime_test_util.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::actors {
namespace {

transport::cluster_secret secret_of(std::uint8_t b) {
  transport::cluster_secret s;
  s.fill(std::byte{b});
  return s;
}

transport::session_config quick_session() {
  transport::session_config s;
  s.heartbeat_interval_ms = milliseconds(100);
  s.heartbeat_timeout_ms = milliseconds(1000);
  return s;
}

struct tiny_worker {
  std::vector<std::unique_ptr<kernels::backend>> backends;
  std::vector<std::unique_ptr<engine::causal_lm>> models;
  std::unique_ptr<worker_node> node;
};

struct tiny_cluster {
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  std::vector<std::int32_t> eos;
  std::unique_ptr<head_node> head;
  std::vector<tiny_worker> workers;
  transport::cluster_secret secret = secret_of(9);
  std::chrono::microseconds busy_poll_us{0};   // every node's transport_config::busy_poll_us
};

// head_port 0: c.head's.
void start_worker(tiny_cluster& c, std::int32_t node_id, std::int32_t replica_base, std::int32_t replicas,
                  std::uint16_t head_port = 0, const engine::model_options& model = test::small_cache()) {
  tiny_worker w;
  worker_node_options o;
  o.transport.session = quick_session();
  o.transport.busy_poll_us = c.busy_poll_us;
  o.link.head_port = head_port ? head_port : c.head->port();
  o.link.replica_base = replica_base;
  o.link.replicas = replicas;
  o.link.reconnect_interval_ms = milliseconds(50);
  o.supervisor = test::test_options(replicas).supervisor;
  o.node_id = node_id;
  for (int i = 0; i < replicas; ++i) {
    w.backends.push_back(engine::test_util::make_backend());
    w.models.push_back(engine::test_util::load_model(engine::test_util::tiny_llama_dir(), *w.backends.back(),
                                                     model));
    ASSERT_TRUE(w.models.back());
    o.supervisor.executors.push_back(std::make_shared<serving::model_executor>(*w.models.back()));
  }
  auto n = worker_node::start(o, c.secret);
  ASSERT_TRUE(n.ok()) << n.err().to_string();
  w.node = std::move(*n);
  c.workers.push_back(std::move(w));
}

// A head for `workers` workers with one replica each (on `port`; 0: a free one). Without
// stop_at_eos every request runs to its max_tokens.
void start_head(tiny_cluster& c, int workers, std::uint16_t port = 0, bool stop_at_eos = true) {
  const auto& dir = engine::test_util::tiny_llama_dir();
  head_node_options h;
  h.transport.session = quick_session();
  h.transport.busy_poll_us = c.busy_poll_us;
  h.transport.listen_port = port;
  h.replicas = workers;
  h.router = test::test_options(workers).router;
  auto probe = engine::test_util::make_backend();
  auto model = engine::test_util::load_model(dir, *probe, test::small_cache());
  h.router.policy.vocab_size = model->config().vocab_size;
  h.router.policy.context_tokens_max = model->config().max_position_embeddings;
  h.router.policy.stop_token_ids = stop_at_eos ? c.eos : std::vector<std::int32_t>{};
  auto head = head_node::start(h, c.secret, c.tokenizer);
  EXPECT_TRUE(head.ok()) << (head.ok() ? "" : head.err().to_string());
  if (head) c.head = std::move(*head);
}

// A head and `workers` workers with one replica each.
tiny_cluster start_cluster(int workers, bool stop_at_eos = true, std::chrono::microseconds busy_poll_us = {}) {
  tiny_cluster c;
  c.busy_poll_us = busy_poll_us;
  auto tok = std::make_shared<tokenizer::tokenizer>(engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir()));
  c.eos = tok->eos_ids();
  c.tokenizer = tok;
  start_head(c, workers, 0, stop_at_eos);
  if (!c.head) return c;
  for (int w = 0; w < workers; ++w) start_worker(c, w + 1, w, 1);
  auto ready = c.head->wait_ready(milliseconds(30000));
  EXPECT_TRUE(ready.ok()) << (ready.ok() ? "" : ready.err().to_string());
  return c;
}

std::string url_of(const tiny_cluster& c) { return "dsrt://127.0.0.1:" + std::to_string(c.head->port()); }

std::vector<client_request> mixed_requests(int n) {
  std::vector<client_request> out;
  for (int i = 0; i < n; ++i) {
    client_request r;
    r.prompt = "request " + std::to_string(i) + (i % 2 ? " tell me about the sea" : " hello");
    r.max_tokens = 1 + (i * 7) % 20;
    r.priority = i % 3;
    if (i % 3 == 1) r.sampling = {.temperature = 0.8f, .top_k = 40, .seed = std::uint64_t(i)};
    if (i % 10 == 7) r.stop = {"e"};
    out.push_back(r);
  }
  return out;
}

std::map<int, test::stream_record> run_all(router_access& rt, const std::vector<client_request>& requests) {
  client c(rt);
  test::collector col;
  for (int i = 0; i < int(requests.size()); ++i) EXPECT_TRUE(c.submit(requests[std::size_t(i)], col.on_chunk(i), col.on_final(i)).ok());
  EXPECT_TRUE(col.wait_finals(int(requests.size()), std::chrono::seconds(300)));
  col.expect_contract();
  return col.records();
}

// The cluster serves: a 3-token request through `cl` completes.
void expect_served(client& cl) {
  client_request r;
  r.prompt = "hello";
  r.max_tokens = 3;
  const auto f = cl.generate(r);
  EXPECT_FALSE(f.failure) << f.failure->to_string();
  EXPECT_EQ(f.completion_tokens, 3u);
}

// Every node's transport polls for 200 us after traffic (busy_poll_us): the same answers.
TEST(ClusterNodes, HeadAndTwoWorkersAnswer100RequestsAsTheSingleProcessRuntime) {
  auto c = start_cluster(2, true, std::chrono::microseconds(200));
  ASSERT_TRUE(c.head);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok()) << remote.err().to_string();
  const auto requests = mixed_requests(100);
  const auto through_cluster = run_all(**remote, requests);

  auto local = test::start_tiny(test::test_options(2), test::small_cache());
  ASSERT_TRUE(local.runtime);
  const auto in_process = run_all(*local.runtime, requests);
  ASSERT_EQ(through_cluster.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    const auto& a = through_cluster.at(i).final;
    const auto& b = in_process.at(i).final;
    ASSERT_FALSE(a.failure) << "request " << i << ": " << a.failure->to_string();
    EXPECT_EQ(a.tokens, b.tokens) << "request " << i;
    EXPECT_EQ(a.text, b.text) << "request " << i;
    EXPECT_EQ(a.reason, b.reason) << "request " << i;
  }
  auto link = c.head->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->workers, 2);
  EXPECT_EQ(link->clients, 1);
  EXPECT_EQ(link->remote_requests, 100);
}

TEST(ClusterNodes, AWorkerLostUnderLoadCostsNoRequestItsFinal) {
  auto c = start_cluster(2);
  ASSERT_TRUE(c.head);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok()) << remote.err().to_string();
  client cl(**remote);
  test::collector col;
  for (int i = 0; i < 60; ++i) {
    client_request r;
    r.prompt = "under load " + std::to_string(i);
    r.max_tokens = 24;
    ASSERT_TRUE(cl.submit(r, col.on_chunk(i), col.on_final(i)).ok());
  }
  ASSERT_TRUE(col.wait_chunks(40, std::chrono::seconds(60)));
  c.workers[0].node.reset();   // worker 1 vanishes mid-stream
  ASSERT_TRUE(col.wait_finals(60, std::chrono::seconds(300)));
  col.expect_contract();
  int completed = 0;
  for (const auto& [i, r] : col.records()) completed += !r.final.failure;
  EXPECT_EQ(completed, 60) << "every request resumes on the surviving worker";
  auto st = c.head->router_status();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->replicas_up, 1);
  EXPECT_GT(st->retries + st->resumptions, 0) << "the worker went while it held requests";

  // The node comes back (a new incarnation) and serves again.
  start_worker(c, 1, 0, 1);
  ASSERT_TRUE(c.head->wait_ready(milliseconds(30000)).ok());
  client_request r;
  r.prompt = "after the restart";
  r.max_tokens = 4;
  const auto f = cl.generate(r);
  EXPECT_FALSE(f.failure);
}

TEST(ClusterNodes, AClientWithTheWrongSecretIsRefusedWhileOthersAreServed) {
  auto c = start_cluster(1);
  ASSERT_TRUE(c.head);
  remote_options quick;
  quick.connect_timeout_ms = milliseconds(1500);
  auto intruder = remote_runtime::connect(url_of(c), secret_of(1), c.tokenizer, quick);
  ASSERT_FALSE(intruder.ok());
  EXPECT_EQ(intruder.err().code, error_code::unauthenticated) << intruder.err().to_string();
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  expect_served(cl);
}

// A peer that knows the secret but sends the head a tensor (nothing sends the head any)
// breaks the protocol: the head closes that connection and serves everyone else.
TEST(ClusterNodes, APeerSendingTheHeadATensorIsDisconnectedWhileOthersAreServed) {
  auto c = start_cluster(1);
  ASSERT_TRUE(c.head);
  transport::test::recorder rec;
  transport::transport_config tc;
  tc.listen = false;
  tc.session = quick_session();
  auto raw = transport::ucx_transport::start(tc, c.secret, {transport::node_role::client, -1, 77}, rec);
  ASSERT_TRUE(raw.ok()) << raw.err().to_string();
  const auto head = (*raw)->connect("127.0.0.1", c.head->port());
  ASSERT_TRUE(rec.wait([&](auto& r) { return r.up_.count(head) > 0; })) << "never authenticated";
  auto data = std::make_shared<std::vector<std::byte>>(4096, std::byte{7});
  ASSERT_TRUE((*raw)->send_tensor(head, {1, 0, 0, {4096}}, data, *data).ok());
  ASSERT_TRUE(rec.wait([&](auto& r) { return r.down_.count(head) > 0; })) << "the head kept the connection";
  auto link = c.head->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->rejected_peers, 1);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  expect_served(cl);
}

// A head (here a raw transport in the head's role) that sends a worker what a head never
// may — a frame of another role, a replica request that does not decode — loses the
// connection; the worker reconnects each time.
TEST(ClusterNodes, AWorkerClosesAHeadThatBreaksTheProtocol) {
  transport::test::recorder rec;
  transport::transport_config tc;
  tc.session = quick_session();
  auto fake = transport::ucx_transport::start(tc, secret_of(9), {transport::node_role::head, 0, 5}, rec);
  ASSERT_TRUE(fake.ok()) << fake.err().to_string();
  tiny_cluster c;
  start_worker(c, 1, 0, 1, (*fake)->port());
  ASSERT_EQ(c.workers.size(), 1u);
  // The worker's current connection, once it has announced its replica on it.
  const auto connection = [&] {
    transport::peer_id peer = 0;
    EXPECT_TRUE(rec.wait([&](auto& r) {
      for (const auto& [p, frames] : r.other_)
        if (!r.down_.count(p) && frames > 0) peer = p;
      return peer != 0;
    })) << "the worker never connected";
    return peer;
  };
  serving::replica_request unreadable;
  unreadable.request_id = 1;
  unreadable.attempt = 1;
  unreadable.sequence.id = 1;
  unreadable.sequence.tokens = {1, -2};   // a negative token id does not decode
  unreadable.sequence.prompt_tokens = 2;
  unreadable.sequence.max_new_tokens = 4;
  // Two wrong frames back to back on one connection (the second is not read: one
  // violation), then one on the next.
  const std::vector<std::vector<transport::frame_bytes>> per_connection = {
      {transport::encode(serving::token_chunk{1, 0, {5}, ""}),   // a head sends these to clients
       transport::encode(unreadable, transport::clock_anchor::now())},
      {transport::encode(unreadable, transport::clock_anchor::now())},
  };
  for (const auto& frames : per_connection) {
    const auto peer = connection();
    for (const auto& frame : frames) ASSERT_TRUE((*fake)->send(peer, frame).ok());
    ASSERT_TRUE(rec.wait([&](auto& r) { return r.down_.count(peer) > 0; })) << "the worker kept the connection";
  }
  connection();   // and it is back
  auto link = c.workers[0].node->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->protocol_violations, 2);
  c.workers.clear();   // before the fake head's transport
}

// The head restarts on its port while a worker still runs the old head's request. The new
// head's ids start over, so its first request has the old one's id: the worker must stop
// the old sequence and never pass its tokens or final off as the new request's.
TEST(ClusterNodes, ARestartedHeadGetsNothingOfTheOldHeadsRequests) {
  auto c = start_cluster(1, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  const auto port = c.head->port();
  c.workers[0].node->faults(0).slow_step_ms = 20;   // the old request is still running
  {
    auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
    ASSERT_TRUE(remote.ok());
    client cl(**remote);
    test::collector col;
    client_request old_request;
    old_request.prompt = "the old head's request, long enough to outlive its head";
    old_request.max_tokens = 400;
    ASSERT_TRUE(cl.submit(old_request, col.on_chunk(0), col.on_final(0)).ok());
    ASSERT_TRUE(col.wait_chunks(3, std::chrono::seconds(60)));
    c.head.reset();   // the old head goes while its request runs
    ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(60)));
  }
  start_head(c, 1, port, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  ASSERT_TRUE(c.head->wait_ready(milliseconds(30000)).ok());
  c.workers[0].node->faults(0).slow_step_ms = 0;
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  client_request fresh;
  fresh.prompt = "a new head's first request";
  fresh.max_tokens = 6;
  const auto first = cl.generate(fresh);   // request id 1 at the new head, as the old one was
  ASSERT_FALSE(first.failure) << first.failure->to_string();
  EXPECT_EQ(first.completion_tokens, 6u);
  const auto again = cl.generate(fresh);   // the same request alone: the same tokens
  ASSERT_FALSE(again.failure) << again.failure->to_string();
  EXPECT_EQ(first.tokens, again.tokens) << "the first request got another sequence's tokens";
  auto link = c.workers[0].node->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_GE(link->cancelled_on_head_loss, 1) << "the old head's sequence was not stopped";
}

// A remote request counts in the head link's open_requests (and so in in_flight()) from its
// generate frame until its final has gone to the client.
TEST(ClusterNodes, TheLinkCountsARemoteRequestOpenUntilItsFinalHasGone) {
  auto c = start_cluster(1, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  c.workers[0].node->faults(0).slow_step_ms = 20;   // streams for 0.8 s at least
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  test::collector col;
  client_request r;
  r.prompt = "open until its final";
  r.max_tokens = 40;
  ASSERT_TRUE(cl.submit(r, col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(col.wait_chunks(1, std::chrono::seconds(60)));
  auto link = c.head->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->open_requests, 1);
  EXPECT_EQ(c.head->in_flight(), 1);
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(60)));
  link = c.head->link_status();
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->open_requests, 0);
  EXPECT_EQ(c.head->in_flight(), 0);
}

// dsnode's drain: once in_flight() says 0 the head may go at once, and every remote client
// has its final. The router's count reaches 0 before the link has passed its last chunks
// and finals on (over ssh, under load, the head went with them: ClusterSsh); in_flight()
// waits for the link too, and the transport sends what it was given before its goodbyes
// (UcxTransport.FramesSentJustBeforeTheTransportGoesArriveAheadOfItsGoodbye).
TEST(ClusterNodes, AHeadGoneOnceDrainedHasSentEveryRemoteClientItsFinal) {
  auto c = start_cluster(1, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  test::collector col;
  constexpr int requests = 8;
  constexpr std::uint32_t tokens = 200;
  for (int i = 0; i < requests; ++i) {
    client_request r;
    r.prompt = "drained " + std::to_string(i);
    r.max_tokens = tokens;
    ASSERT_TRUE(cl.submit(r, col.on_chunk(i), col.on_final(i)).ok());
  }
  ASSERT_TRUE(col.wait_chunks(requests, std::chrono::seconds(60)));
  c.head->drain();
  // As dsnode waits, without its 20 ms naps: the head goes the moment the count is 0.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (c.head->in_flight() != 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  ASSERT_EQ(c.head->in_flight(), 0);
  c.head.reset();
  ASSERT_TRUE(col.wait_finals(requests, std::chrono::seconds(60)));
  col.expect_contract();
  for (const auto& [i, r] : col.records()) {
    EXPECT_FALSE(r.final.failure) << "request " << i << ": " << r.final.failure->to_string();
    EXPECT_EQ(r.final.completion_tokens, tokens) << "request " << i;
  }
}

// An app on the head (dsrt::client on head_node) and a remote client each send their
// first request at once: both are request 1 to their side, neither may take the other's
// place in the router.
TEST(ClusterNodes, RequestsOfAppsOnTheHeadAndOfRemoteClientsDoNotCollide) {
  auto c = start_cluster(1, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  c.workers[0].node->faults(0).slow_step_ms = 5;   // both requests are in flight together
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client local_client(*c.head), remote_client(**remote);
  test::collector col;
  client_request r;
  r.prompt = "two clients, one router";
  r.max_tokens = 12;
  ASSERT_TRUE(local_client.submit(r, col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(remote_client.submit(r, col.on_chunk(1), col.on_final(1)).ok());
  ASSERT_TRUE(col.wait_finals(2, std::chrono::seconds(60)));
  col.expect_contract();
  const auto records = col.records();
  for (const auto& [key, rec] : records) {
    ASSERT_FALSE(rec.final.failure) << (key == 0 ? "local" : "remote") << ": " << rec.final.failure->to_string();
    EXPECT_EQ(rec.final.completion_tokens, 12u);
  }
  EXPECT_EQ(records.at(0).tokens, records.at(1).tokens) << "the same greedy request, the same tokens";
}

// Values the wire refuses (more stop strings than wire_limits allow) in a frame the head
// can read: the client gets INVALID_ARGUMENT under its own id, not silence, and the
// connection keeps serving.
TEST(ClusterNodes, ARemoteRequestTheHeadRefusesGetsItsFinal) {
  auto c = start_cluster(1);
  ASSERT_TRUE(c.head);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  client_request bad;
  bad.prompt = "x";
  bad.max_tokens = 3;
  bad.stop.assign(transport::wire_limits{}.stop_strings_max + 1, "a");
  test::collector col;
  ASSERT_TRUE(cl.submit(bad, col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(30))) << "the refused request got no final";
  const auto refused = col.records().at(0).final;
  ASSERT_TRUE(refused.failure);
  EXPECT_EQ(refused.failure->code, error_code::invalid_argument) << refused.failure->to_string();
  expect_served(cl);
}

// A remote request's error text names the client's own id, never the head's internal one
// (which carries the top bit: 9223372036854775808 and up).
TEST(ClusterNodes, ARemoteRequestsErrorsNameItsOwnId) {
  auto c = start_cluster(1, /*stop_at_eos=*/false);
  ASSERT_TRUE(c.head);
  c.workers[0].node->faults(0).slow_step_ms = 50;   // the deadline passes while it runs
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  client_request r;
  r.prompt = "a request with no time to finish";
  r.max_tokens = 200;
  r.timeout = milliseconds(150);
  test::collector col;
  const auto id = cl.submit(r, col.on_chunk(0), col.on_final(0));
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(60)));
  const auto f = col.records().at(0).final;
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::deadline_exceeded) << f.failure->to_string();
  EXPECT_NE(f.failure->message.find("request " + std::to_string(*id) + " "), std::string::npos) << f.failure->message;
  EXPECT_EQ(f.failure->message.find("922337"), std::string::npos) << f.failure->message;
}

// An error a worker's replica writes ("sequence <its local id>: ... KV blocks") reaches a
// remote client naming the client's id: the worker link maps its id to the head's, the
// head link the head's to the client's. An app on the head goes first, so the three ids
// differ.
TEST(ClusterNodes, AWorkersErrorTextNamesTheRemoteClientsId) {
  tiny_cluster c;
  auto tok = std::make_shared<tokenizer::tokenizer>(engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir()));
  c.eos = tok->eos_ids();
  c.tokenizer = tok;
  start_head(c, 1);
  ASSERT_TRUE(c.head);
  engine::model_options small_kv;
  small_kv.kv_cache_bytes_max = 256 << 10;
  start_worker(c, 1, 0, 1, 0, small_kv);
  ASSERT_EQ(c.workers.size(), 1u);
  ASSERT_TRUE(c.head->wait_ready(milliseconds(30000)).ok());
  const auto& model = *c.workers[0].models[0];
  const std::int64_t kv_tokens = std::int64_t(model.kv_blocks()) * model.kv_block_tokens();
  ASSERT_LT(kv_tokens + 110, model.config().max_position_embeddings) << "the cache must be the smaller limit";
  client_request too_large;
  too_large.prompt_tokens = engine::test_util::make_prompt(10, 1);
  too_large.max_tokens = std::int32_t(kv_tokens + 100);
  client on_head(*c.head);
  const auto first = on_head.generate(too_large);   // the worker's local id 1
  ASSERT_TRUE(first.failure);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  client cl(**remote);
  test::collector col;
  const auto id = cl.submit(too_large, col.on_chunk(0), col.on_final(0));   // local id 2, head id 2^63 + 1
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(60)));
  const auto f = col.records().at(0).final;
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::invalid_argument) << f.failure->to_string();
  EXPECT_NE(f.failure->message.find("sequence " + std::to_string(*id) + ":"), std::string::npos) << f.failure->message;
  EXPECT_EQ(f.failure->message.find("sequence 2:"), std::string::npos) << f.failure->message;
  EXPECT_EQ(f.failure->message.find("922337"), std::string::npos) << f.failure->message;
}

TEST(ClusterIds, AnIdIsReplacedWhereItNamesARequest) {
  EXPECT_EQ(with_id_replaced("request 12 passed its deadline", 12, 7), "request 7 passed its deadline");
  EXPECT_EQ(with_id_replaced("12: sequence 12 of 112, request 123, request id 12", 12, 9),
            "12: sequence 9 of 112, request 123, request id 9");
  EXPECT_EQ(with_id_replaced("request 1212, request 12", 12, 3), "request 1212, request 3");
  EXPECT_EQ(with_id_replaced("no id here", 12, 3), "no id here");
  EXPECT_EQ(with_id_replaced("", 12, 3), "");
  std::optional<error> e = make_error(error_code::internal, "request 5 failed on replica 5");
  replace_id(e, 5, 6);
  EXPECT_EQ(e->message, "request 6 failed on replica 5");
  std::optional<error> none;
  replace_id(none, 5, 6);
  EXPECT_FALSE(none);
}

TEST(ClusterNodes, ARemoteClientWhoseHeadIsGoneGetsUnavailable) {
  auto c = start_cluster(1);
  ASSERT_TRUE(c.head);
  auto remote = remote_runtime::connect(url_of(c), c.secret, c.tokenizer);
  ASSERT_TRUE(remote.ok());
  c.head.reset();
  client cl(**remote);
  ASSERT_TRUE(wait_until(milliseconds(10000), "client notices", [&] {
    auto s = (*remote)->stats();
    return s && !s->connected;
  }).ok());
  client_request r;
  r.prompt = "anyone?";
  const auto f = cl.generate(r);
  ASSERT_TRUE(f.failure);
  EXPECT_EQ(f.failure->code, error_code::unavailable);
}

TEST(ClusterNodes, ClusterUrlsAreParsedStrictly) {
  EXPECT_TRUE(parse_cluster_url("dsrt://127.0.0.1:7400").ok());
  EXPECT_EQ(parse_cluster_url("dsrt://host:1")->host, "host");
  for (const char* bad : {"http://h:1", "dsrt://h", "dsrt://:7", "dsrt://h:0", "dsrt://h:70000", "dsrt://h:7x"})
    EXPECT_FALSE(parse_cluster_url(bad).ok()) << bad;
}

}  // namespace
}  // namespace dsrt::actors
