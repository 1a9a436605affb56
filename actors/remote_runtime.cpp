#include "actors/remote_runtime.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <set>
#include <unordered_map>

#include "actors/blocking_ask.h"
#include "actors/cluster_node.h"
#include "actors/messages.h"
#include "actors/system_config.h"
#include "runtime/engine/sampler.h"
#include "transport/wire.h"

namespace dsrt::actors {

using transport::frame_type;
using transport::peer_id;

result<cluster_address> parse_cluster_url(const std::string& url) {
  constexpr std::string_view scheme = "dsrt://";
  if (url.rfind(scheme, 0) != 0)
    return make_error(error_code::invalid_argument, "'{}' is not a dsrt://HOST:PORT address", url);
  const std::string rest = url.substr(scheme.size());
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return make_error(error_code::invalid_argument, "'{}' needs HOST:PORT after dsrt://", url);
  cluster_address a;
  a.host = rest.substr(0, colon);
  const auto port = std::string_view(rest).substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
    return make_error(error_code::invalid_argument, "'{}': port must be 1..65535", url);
  a.port = std::uint16_t(value);
  return a;
}

namespace {

using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;

struct open_request {
  caf::actor client;            // the request actor
  std::uint32_t chunks = 0;     // chunks handed on: the next one must carry this number
  std::uint32_t prompt_tokens = 0;
  std::int64_t tokens = 0;      // tokens handed on in chunks
  std::int32_t max_tokens = 0;  // the most the head may stream
  std::optional<clock_time> expires;   // deadline + final_grace_ms: its key in `expiries`
};

// What the head would refuse as unreadable whatever its model, or what encode() would
// alter, refused here in the router's words (request_router::validate) and never sent.
status check_sendable(const generate_request& r, const transport::wire_limits& limits) {
  const auto bad = [&](std::string why) {
    return error{error_code::invalid_argument, fmt::format("request {}: {}", r.request_id, why)};
  };
  if (r.prompt.empty()) return bad("the prompt is empty");
  if (r.prompt.size() > limits.tokens_per_message_max)
    return bad(fmt::format("the prompt has {} tokens, a message at most {}", r.prompt.size(),
                           limits.tokens_per_message_max));
  for (std::int32_t t : r.prompt)
    if (t < 0) return bad(fmt::format("prompt token {} is negative", t));
  if (r.max_tokens < 1) return bad(fmt::format("max_tokens {} is below 1", r.max_tokens));
  if (auto s = engine::validate(r.sampling); !s) return bad(s.err().message);
  if (r.stop.size() > limits.stop_strings_max)
    return bad(fmt::format("{} stop strings, at most {}", r.stop.size(), limits.stop_strings_max));
  for (const auto& s : r.stop)
    if (s.empty() || s.size() > limits.stop_string_bytes_max)
      return bad(fmt::format("stop strings must have 1 to {} bytes", limits.stop_string_bytes_max));
  if (r.priority < 0 || r.priority > 255) return bad(fmt::format("priority {} is outside 0 .. 255", r.priority));
  if (r.tenant.size() > limits.tenant_bytes_max)
    return bad(fmt::format("the tenant has {} bytes, at most {}", r.tenant.size(), limits.tenant_bytes_max));
  return ok_status();
}

struct client_link_state {
  remote_options options;
  cluster_address head_address;
  transport::ucx_transport* transport = nullptr;
  peer_id head = 0, connecting = 0;
  peer_id closing = 0;          // a head this side is closing for breaking the protocol
  std::unordered_map<std::uint64_t, open_request> open;
  // Open requests with a deadline, by when this side ends them; checked every
  // expiry_check_ms while not empty (one timer, whatever the number of requests).
  std::set<std::pair<clock_time, std::uint64_t>> expiries;
  bool expiry_armed = false;
  std::int64_t connects = 0;
  std::int64_t protocol_violations = 0;
  std::int64_t expired = 0;
  std::optional<error> last_failure;
  static inline const char* name = "dsrt.client_link";
};

using self_ptr = caf::stateful_actor<client_link_state>*;

void fail_request(self_ptr self, const caf::actor& client, std::uint64_t id, std::uint32_t chunks,
                  std::uint32_t prompt_tokens, error why) {
  final_message f;
  f.request_id = id;
  f.chunks_sent = chunks;
  f.prompt_tokens = prompt_tokens;
  f.failure = std::move(why);
  if (f.failure->code == error_code::unavailable || f.failure->code == error_code::overloaded)
    f.retry_after_ms = self->state.options.local_retry_after_ms;
  self->send(client, std::move(f));
}

// Forgets an open request (its final went out).
void close_request(self_ptr self, std::unordered_map<std::uint64_t, open_request>::iterator it) {
  auto& st = self->state;
  if (it->second.expires) st.expiries.erase({*it->second.expires, it->first});
  st.open.erase(it);
}

void lost_head(self_ptr self, const std::string& why) {
  auto& st = self->state;
  for (auto& [id, r] : st.open)
    fail_request(self, r.client, id, r.chunks, r.prompt_tokens,
                 make_error(error_code::unavailable, "request {}: lost the connection to the head: {}", id, why));
  st.open.clear();
  st.expiries.clear();
  st.head = 0;
}

// The head sent what it never may: every open request ends now, before any frame queued
// behind this one is read (they belong to a connection that no longer counts), and the
// connection closes; its peer_down brings the reconnect.
void drop_head(self_ptr self, const std::string& why) {
  auto& st = self->state;
  spdlog::error("client: closing the connection to the head, which broke the protocol: {}", why);
  const auto peer = st.head;
  ++st.protocol_violations;
  st.last_failure = make_error(error_code::corrupt_data, "the head broke the protocol: {}", why);
  lost_head(self, "the head broke the protocol: " + why);
  st.closing = peer;
  st.transport->close(peer, why);
}

void on_chunk(self_ptr self, token_chunk& c) {
  auto& st = self->state;
  auto it = st.open.find(c.request_id);
  if (it == st.open.end()) return;   // ended here already (past its deadline)
  auto& r = it->second;
  if (c.sequence != r.chunks)
    return drop_head(self, fmt::format("request {}: chunk {} came where chunk {} was due", c.request_id,
                                       c.sequence, r.chunks));
  if (r.tokens + std::int64_t(c.tokens.size()) > r.max_tokens)
    return drop_head(self, fmt::format("request {}: {} tokens streamed, max_tokens is {}", c.request_id,
                                       r.tokens + std::int64_t(c.tokens.size()), r.max_tokens));
  ++r.chunks;
  r.tokens += std::int64_t(c.tokens.size());
  self->send(r.client, std::move(c));
}

void on_final(self_ptr self, final_message& f) {
  auto& st = self->state;
  auto it = st.open.find(f.request_id);
  if (it == st.open.end()) return;
  const auto& r = it->second;
  if (f.chunks_sent != r.chunks)
    return drop_head(self, fmt::format("request {}: its final counts {} chunks, {} came", f.request_id,
                                       f.chunks_sent, r.chunks));
  if (std::int64_t(f.tokens.size()) > r.max_tokens)
    return drop_head(self, fmt::format("request {}: its final has {} tokens, max_tokens is {}", f.request_id,
                                       f.tokens.size(), r.max_tokens));
  self->send(r.client, std::move(f));
  close_request(self, it);
}

caf::behavior client_link_actor(self_ptr self, transport::ucx_transport* transport, cluster_address head,
                                remote_options options) {
  auto& st = self->state;
  st.transport = transport;
  st.options = options;
  st.head_address = head;
  st.connecting = transport->connect(head.host, head.port);
  return {
      [self](peer_up_msg& m) {
        auto& st = self->state;
        if (m.peer != st.connecting || m.hello.role != transport::node_role::head) {
          st.transport->close(m.peer, "not the head");
          return;
        }
        st.head = m.peer;
        st.connecting = 0;
        ++st.connects;
      },
      [self](peer_down_msg& m) {
        auto& st = self->state;
        if (m.peer == st.head || m.peer == st.connecting) st.last_failure = m.why;
        if (m.peer == st.closing) {   // its requests ended when it broke the protocol
          st.closing = 0;
          if (st.connecting == 0) self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value);
          return;
        }
        if (m.peer == st.head) {
          spdlog::warn("client: lost the head: {}", m.why.to_string());
          lost_head(self, m.why.to_string());
        } else if (m.peer != st.connecting) {
          return;
        }
        st.connecting = 0;
        self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value);
      },
      [self](reconnect_atom) {
        auto& st = self->state;
        if (st.head == 0 && st.connecting == 0)
          st.connecting = st.transport->connect(st.head_address.host, st.head_address.port);
      },
      [self](frame_msg& m) {
        auto& st = self->state;
        if (m.peer != st.head) return;
        auto& f = *m.frame;
        if (f.type() == frame_type::token_chunk) {
          auto c = transport::decode_token_chunk(f);
          if (!c) return drop_head(self, c.err().to_string());
          on_chunk(self, *c);
        } else if (f.type() == frame_type::final) {
          auto fin = transport::decode_final(f);
          if (!fin) return drop_head(self, fin.err().to_string());
          on_final(self, *fin);
        } else {
          drop_head(self, fmt::format("a head may not send a client {}", transport::frame_type_name(f.type())));
        }
      },
      [self](tensor_msg& m) {   // the head sends clients none: it breaks the protocol
        if (m.peer == self->state.head) return drop_head(self, "a tensor sent to a client");
        self->state.transport->close(m.peer, "a tensor sent to a client");
      },
      [self](generate_request& r) {
        auto& st = self->state;
        auto client = caf::actor_cast<caf::actor>(self->current_sender());
        const auto prompt_tokens = std::uint32_t(r.prompt.size());
        // Bad input first: a retry hint on a request that can never succeed misleads.
        if (auto s = check_sendable(r, transport::wire_limits{}); !s)
          return fail_request(self, client, r.request_id, 0, prompt_tokens, s.err());
        if (st.head == 0)
          return fail_request(self, client, r.request_id, 0, prompt_tokens,
                              make_error(error_code::unavailable, "not connected to the head"));
        if (st.open.size() >= st.options.open_requests_max)
          return fail_request(self, client, r.request_id, 0, prompt_tokens,
                              make_error(error_code::overloaded, "{} requests open (open_requests_max)", st.open.size()));
        if (st.open.count(r.request_id))
          return fail_request(self, client, r.request_id, 0, prompt_tokens,
                              make_error(error_code::invalid_argument, "request id {} is already open", r.request_id));
        if (auto s = st.transport->send(st.head, transport::encode(r, transport::clock_anchor::now())); !s)
          return fail_request(self, client, r.request_id, 0, prompt_tokens, s.err());
        auto& opened = st.open[r.request_id] = open_request{client, 0, prompt_tokens, 0, r.max_tokens, {}};
        // A deadline as far as the wire's "none" (deadline_distance_max) or further is none.
        const auto now = std::chrono::steady_clock::now();
        if (r.deadline && *r.deadline - now < transport::wire_limits{}.deadline_distance_max) {
          opened.expires = std::max(*r.deadline, now) + st.options.final_grace_ms;
          st.expiries.emplace(*opened.expires, r.request_id);
          if (!st.expiry_armed) {
            st.expiry_armed = true;
            self->delayed_send(self, st.options.expiry_check_ms, expire_atom::value);
          }
        }
      },
      // Requests the head should have ended at their deadline and did not answer in the
      // grace after: ended here, and the head is told to cancel them.
      [self](expire_atom) {
        auto& st = self->state;
        const auto now = std::chrono::steady_clock::now();
        while (!st.expiries.empty() && st.expiries.begin()->first <= now) {
          const auto id = st.expiries.begin()->second;
          auto it = st.open.find(id);
          if (it == st.open.end()) {   // never: a request leaves both together (close_request)
            st.expiries.erase(st.expiries.begin());
            continue;
          }
          ++st.expired;
          fail_request(self, it->second.client, id, it->second.chunks, it->second.prompt_tokens,
                       make_error(error_code::deadline_exceeded,
                                  "request {}: no final from the head within {} ms of its deadline", id,
                                  st.options.final_grace_ms.count()));
          close_request(self, it);
          if (st.head) (void)st.transport->send(st.head, transport::encode_cancel(frame_type::cancel, id));
        }
        st.expiry_armed = !st.expiries.empty();
        if (st.expiry_armed) self->delayed_send(self, st.options.expiry_check_ms, expire_atom::value);
      },
      [self](cancel_atom, std::uint64_t id) {
        auto& st = self->state;
        if (st.head && st.open.count(id)) (void)st.transport->send(st.head, transport::encode_cancel(frame_type::cancel, id));
      },
      [self](status_atom) {
        auto& st = self->state;
        return remote_stats{st.head != 0, std::int64_t(st.open.size()), st.connects, st.last_failure,
                            st.protocol_violations, st.expired};
      },
  };
}

}  // namespace

status validate(const remote_options& o) {
  const auto bad = [](std::string_view field, auto value) {
    return error{error_code::invalid_argument, fmt::format("remote_options.{} = {} is out of range", field, value)};
  };
  if (o.connect_timeout_ms.count() < 0) return bad("connect_timeout_ms", o.connect_timeout_ms.count());
  if (o.reconnect_interval_ms.count() < 1) return bad("reconnect_interval_ms", o.reconnect_interval_ms.count());
  if (o.open_requests_max < 1) return bad("open_requests_max", o.open_requests_max);
  if (o.final_grace_ms.count() < 0) return bad("final_grace_ms", o.final_grace_ms.count());
  if (o.expiry_check_ms.count() < 1) return bad("expiry_check_ms", o.expiry_check_ms.count());
  if (o.bridge.peer_messages_max < 1) return bad("bridge.peer_messages_max", o.bridge.peer_messages_max);
  if (o.bridge.peer_bytes_max < 1) return bad("bridge.peer_bytes_max", o.bridge.peer_bytes_max);
  if (o.scheduler_threads < 1) return bad("scheduler_threads", o.scheduler_threads);
  return ok_status();
}

result<std::unique_ptr<remote_runtime>> remote_runtime::connect(const std::string& url,
                                                                const transport::cluster_secret& secret,
                                                                std::shared_ptr<const tokenizer::tokenizer> tokenizer,
                                                                remote_options options) {
  auto address = parse_cluster_url(url);
  if (!address) return address.err();
  options.transport.listen = false;
  DSRT_TRY(transport::validate(options.transport));
  DSRT_TRY(validate(options));
  std::unique_ptr<remote_runtime> rt(new remote_runtime());
  rt->options_ = options;
  rt->tokenizer_ = std::move(tokenizer);
  rt->config_ = make_system_config(options.scheduler_threads);
  rt->system_ = std::make_unique<caf::actor_system>(*rt->config_);
  auto t = transport::ucx_transport::start(options.transport, secret,
                                           {transport::node_role::client, -1, make_incarnation()}, rt->bridge_);
  if (!t) {
    rt->bridge_.set_target(caf::actor{});
    return t.err();
  }
  rt->transport_ = std::move(*t);
  rt->link_ = rt->system_->spawn(client_link_actor, rt->transport_.get(), *address, options);
  rt->bridge_.set_target(rt->link_, closer(*rt->transport_), options.bridge);
  // A refused proof ends the wait at once; anything else (nothing listening yet) is retried.
  std::optional<error> last;
  auto connected = wait_until(options.connect_timeout_ms, "an authenticated connection to the head", [&] {
    auto s = rt->stats();
    if (s && s->last_failure) last = s->last_failure;
    return (s && s->connected) || (last && last->code == error_code::unauthenticated);
  });
  if (last && last->code == error_code::unauthenticated)
    return make_error(error_code::unauthenticated, "{}: {}", url, last->message);
  if (!connected)
    return make_error(error_code::unavailable, "{}: {} (last: {})", url, connected.err().message,
                      last ? last->message : "no answer");
  return rt;
}

remote_runtime::~remote_runtime() {
  if (!system_) return;
  if (link_) caf::anon_send_exit(link_, caf::exit_reason::user_shutdown);
  link_ = nullptr;
  system_->await_all_actors_done();
  transport_.reset();
  system_.reset();
}

result<remote_stats> remote_runtime::stats() {
  return blocking_ask<remote_stats>(*system_, link_, milliseconds(10000), status_atom::value);
}

}  // namespace dsrt::actors
