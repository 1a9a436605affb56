#include "actors/client_link.h"

#include <spdlog/spdlog.h>

#include <map>
#include <set>
#include <unordered_map>

#include "actors/messages.h"
#include "actors/transport_bridge.h"
#include "runtime/engine/sampler.h"
#include "transport/wire.h"

namespace dsrt::actors {
namespace {

using transport::frame_type;
using transport::peer_id;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;

struct open_request {
  caf::actor client;            // the request actor
  std::uint32_t chunks = 0;     // chunks handed on: the next one must carry this number
  std::uint32_t prompt_tokens = 0;
  std::int64_t tokens = 0;      // tokens handed on in chunks
  std::int32_t max_tokens = 0;  // the most the head may stream
  std::optional<clock_time> deadline;  // the request's (none when as far as the wire's "none")
  std::optional<clock_time> expires;   // deadline + final_grace_ms: its key in `expiries`
  std::uint32_t resends = 0;           // times it was sent again after a lost connection
  bool cancelled = false;              // the app cancelled it: never sent again
  // The request as sent, kept while it may be sent again: no chunk yet, resends left, not
  // cancelled.
  std::optional<generate_request> resendable;
};

// A request waiting for a connection to the head.
struct waiting_request {
  generate_request request;
  caf::actor client;
  clock_time until;             // its key in `wait_ends`
  std::uint32_t resends = 0;
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
  clock_time head_since{};      // when the connection to `head` came up
  std::unordered_map<std::uint64_t, open_request> open;
  // Requests waiting for a connection, by id (the order they were made in), and by when
  // each stops waiting.
  std::map<std::uint64_t, waiting_request> waiting;
  std::set<std::pair<clock_time, std::uint64_t>> wait_ends;
  // Open requests with a deadline, by when this side ends them. Both sets are checked
  // every expiry_check_ms while either is not empty (one timer, whatever the number).
  std::set<std::pair<clock_time, std::uint64_t>> expiries;
  bool expiry_armed = false;
  std::int64_t connects = 0;
  std::int64_t protocol_violations = 0;
  std::int64_t expired = 0;
  std::int64_t resent = 0;
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

void arm_expiry(self_ptr self) {
  auto& st = self->state;
  if (st.expiry_armed || (st.expiries.empty() && st.wait_ends.empty())) return;
  st.expiry_armed = true;
  self->delayed_send(self, st.options.expiry_check_ms, expire_atom::value);
}

// Forgets an open request (its final went out, or it waits to be sent again).
void close_request(self_ptr self, std::unordered_map<std::uint64_t, open_request>::iterator it) {
  auto& st = self->state;
  if (it->second.expires) st.expiries.erase({*it->second.expires, it->first});
  st.open.erase(it);
}

// Sends a request to the head and opens it; a failed send is its final (false).
bool send_request(self_ptr self, generate_request r, caf::actor client, std::uint32_t resends) {
  auto& st = self->state;
  const auto prompt_tokens = std::uint32_t(r.prompt.size());
  if (auto s = st.transport->send(st.head, transport::encode(r, transport::clock_anchor::now())); !s) {
    fail_request(self, client, r.request_id, 0, prompt_tokens, s.err());
    return false;
  }
  auto& opened = st.open[r.request_id] = open_request{std::move(client), 0, prompt_tokens, 0, r.max_tokens};
  opened.resends = resends;
  // A deadline as far as the wire's "none" (deadline_distance_max) or further is none.
  const auto now = std::chrono::steady_clock::now();
  if (r.deadline && *r.deadline - now < transport::wire_limits{}.deadline_distance_max) {
    opened.deadline = r.deadline;
    opened.expires = std::max(*r.deadline, now) + st.options.final_grace_ms;
    st.expiries.emplace(*opened.expires, r.request_id);
    arm_expiry(self);
  }
  if (resends < st.options.resends_max) opened.resendable = std::move(r);
  return true;
}

// Waits for a connection to the head: head_wait_ms, or until the deadline if sooner.
void wait_for_head(self_ptr self, generate_request r, caf::actor client, std::uint32_t resends) {
  auto& st = self->state;
  const auto now = std::chrono::steady_clock::now();
  auto until = now + st.options.head_wait_ms;
  if (r.deadline && *r.deadline < until) until = std::max(*r.deadline, now);
  const auto id = r.request_id;
  st.wait_ends.emplace(until, id);
  st.waiting.emplace(id, waiting_request{std::move(r), std::move(client), until, resends});
  arm_expiry(self);
}

// Ends a waiting request with `why`.
void end_wait(self_ptr self, std::map<std::uint64_t, waiting_request>::iterator it, error why) {
  auto& st = self->state;
  const auto& w = it->second;
  fail_request(self, w.client, it->first, 0, std::uint32_t(w.request.prompt.size()), std::move(why));
  st.wait_ends.erase({w.until, it->first});
  st.waiting.erase(it);
}

// The connection to the head is gone: requests without output wait for the next one
// (when `resend` and they have resends left), the others end: CANCELLED if the app
// cancelled them, DEADLINE_EXCEEDED without output past their deadline, else UNAVAILABLE.
void lost_head(self_ptr self, const std::string& why, bool resend) {
  auto& st = self->state;
  auto open = std::move(st.open);
  st.open.clear();
  st.expiries.clear();
  st.head = 0;
  const auto now = std::chrono::steady_clock::now();
  resend = resend && st.options.head_wait_ms.count() > 0;
  for (auto& [id, r] : open) {
    if (r.cancelled) {
      fail_request(self, r.client, id, r.chunks, r.prompt_tokens, make_error(error_code::cancelled, "request {} cancelled", id));
      continue;
    }
    if (r.chunks == 0 && r.deadline && *r.deadline <= now) {
      fail_request(self, r.client, id, r.chunks, r.prompt_tokens,
                   make_error(error_code::deadline_exceeded, "request {}: its deadline passed, and then the "
                              "connection to the head: {}", id, why));
      continue;
    }
    if (resend && r.resendable) {
      wait_for_head(self, std::move(*r.resendable), std::move(r.client), r.resends + 1);
      continue;
    }
    fail_request(self, r.client, id, r.chunks, r.prompt_tokens,
                 make_error(error_code::unavailable, "request {}: lost the connection to the head: {}", id, why));
  }
}

// The head sent what it never may: every open request ends now, before any frame queued
// behind this one is read (they belong to a connection that no longer counts), and the
// connection closes; its peer_down brings the reconnect. Nothing is sent to it again.
void drop_head(self_ptr self, const std::string& why) {
  auto& st = self->state;
  spdlog::error("client: closing the connection to the head, which broke the protocol: {}", why);
  const auto peer = st.head;
  ++st.protocol_violations;
  st.last_failure = make_error(error_code::corrupt_data, "the head broke the protocol: {}", why);
  lost_head(self, "the head broke the protocol: " + why, false);
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
  r.resendable.reset();   // the app has output: sending it again would repeat it
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

void on_frame(self_ptr self, frame_msg& m) {
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
}

void on_head_up(self_ptr self, peer_id peer) {
  auto& st = self->state;
  st.head = peer;
  st.connecting = 0;
  st.head_since = std::chrono::steady_clock::now();
  ++st.connects;
  // The waiting requests go now, in the order they were made.
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  st.wait_ends.clear();
  for (auto& [id, w] : waiting) {
    const bool again = w.resends > 0;
    if (send_request(self, std::move(w.request), std::move(w.client), w.resends) && again) ++st.resent;
  }
}

void on_head_down(self_ptr self, peer_down_msg& m) {
  auto& st = self->state;
  if (m.peer == st.head || m.peer == st.connecting) st.last_failure = m.why;
  const auto retry_later = [&] { self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value); };
  if (m.peer == st.closing) {   // its requests ended when it broke the protocol
    st.closing = 0;
    if (st.connecting == 0) retry_later();
    return;
  }
  if (m.peer == st.head) {
    spdlog::warn("client: lost the head: {}", m.why.to_string());
    lost_head(self, m.why.to_string(), true);
    // A connection that lasted is tried again at once (the head may well be there; a
    // paused client, say, was dropped by it); one that did not, after the interval.
    if (std::chrono::steady_clock::now() - st.head_since >= st.options.reconnect_interval_ms) {
      st.connecting = st.transport->connect(st.head_address.host, st.head_address.port);
      return;
    }
  } else if (m.peer != st.connecting) {
    return;
  }
  st.connecting = 0;
  retry_later();
}

// Requests past their deadline + final_grace_ms with no final from the head, and waits
// for the head that ran out.
void on_expiry_check(self_ptr self) {
  auto& st = self->state;
  st.expiry_armed = false;
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
                 make_error(error_code::deadline_exceeded, "request {}: no final from the head within {} ms of its deadline",
                            id, st.options.final_grace_ms.count()));
    close_request(self, it);
    if (st.head) (void)st.transport->send(st.head, transport::encode_cancel(frame_type::cancel, id));
  }
  while (!st.wait_ends.empty() && st.wait_ends.begin()->first <= now) {
    const auto id = st.wait_ends.begin()->second;
    auto it = st.waiting.find(id);
    if (it == st.waiting.end()) {   // never: a request leaves both together (end_wait)
      st.wait_ends.erase(st.wait_ends.begin());
      continue;
    }
    const auto& deadline = it->second.request.deadline;
    if (deadline && *deadline <= now)
      end_wait(self, it, make_error(error_code::deadline_exceeded, "request {}: its deadline passed while it waited for "
                                    "a connection to the head", id));
    else
      end_wait(self, it, make_error(error_code::unavailable, "request {}: no connection to the head within {} ms "
                                    "(head_wait_ms); last failure: {}", id, st.options.head_wait_ms.count(),
                                    st.last_failure ? st.last_failure->to_string() : "none"));
  }
  arm_expiry(self);
}

void on_request(self_ptr self, generate_request& r) {
  auto& st = self->state;
  auto client = caf::actor_cast<caf::actor>(self->current_sender());
  const auto prompt_tokens = std::uint32_t(r.prompt.size());
  // Bad input first: a retry hint on a request that can never succeed misleads.
  if (auto s = check_sendable(r, transport::wire_limits{}); !s)
    return fail_request(self, client, r.request_id, 0, prompt_tokens, s.err());
  if (st.open.size() + st.waiting.size() >= st.options.open_requests_max)
    return fail_request(self, client, r.request_id, 0, prompt_tokens,
                        make_error(error_code::overloaded, "{} requests open (open_requests_max)",
                                   st.open.size() + st.waiting.size()));
  if (st.open.count(r.request_id) || st.waiting.count(r.request_id))
    return fail_request(self, client, r.request_id, 0, prompt_tokens,
                        make_error(error_code::invalid_argument, "request id {} is already open", r.request_id));
  if (st.head != 0) {
    send_request(self, std::move(r), std::move(client), 0);
    return;
  }
  if (st.options.head_wait_ms.count() == 0)
    return fail_request(self, client, r.request_id, 0, prompt_tokens,
                        make_error(error_code::unavailable, "not connected to the head"));
  wait_for_head(self, std::move(r), std::move(client), 0);
}

void on_cancel(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  if (auto it = st.waiting.find(id); it != st.waiting.end())
    return end_wait(self, it, make_error(error_code::cancelled, "request {} cancelled", id));
  auto it = st.open.find(id);
  if (it == st.open.end()) return;
  it->second.cancelled = true;   // if the connection goes before the head's final, it ends here
  it->second.resendable.reset();
  if (st.head) (void)st.transport->send(st.head, transport::encode_cancel(frame_type::cancel, id));
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
        on_head_up(self, m.peer);
      },
      [self](peer_down_msg& m) { on_head_down(self, m); },
      [self](reconnect_atom) {
        auto& st = self->state;
        if (st.head == 0 && st.connecting == 0)
          st.connecting = st.transport->connect(st.head_address.host, st.head_address.port);
      },
      [self](frame_msg& m) { on_frame(self, m); },
      [self](tensor_msg& m) {   // the head sends clients none: it breaks the protocol
        if (m.peer == self->state.head) return drop_head(self, "a tensor sent to a client");
        self->state.transport->close(m.peer, "a tensor sent to a client");
      },
      [self](generate_request& r) { on_request(self, r); },
      [self](expire_atom) { on_expiry_check(self); },
      [self](cancel_atom, std::uint64_t id) { on_cancel(self, id); },
      [self](status_atom) {
        auto& st = self->state;
        return remote_stats{st.head != 0,   st.connects,           std::int64_t(st.open.size()),
                            std::int64_t(st.waiting.size()), st.resent, st.last_failure,
                            st.protocol_violations,          st.expired};
      },
  };
}

}  // namespace

caf::actor spawn_client_link(caf::actor_system& system, transport::ucx_transport* transport,
                             const cluster_address& head, const remote_options& options) {
  return system.spawn(client_link_actor, transport, head, options);
}

}  // namespace dsrt::actors
