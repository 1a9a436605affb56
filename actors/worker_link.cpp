#include "actors/worker_link.h"

#include <spdlog/spdlog.h>

#include <unordered_map>
#include <vector>

#include "actors/id_text.h"
#include "transport/wire.h"

namespace dsrt::actors {

using transport::frame_type;
using transport::peer_id;

namespace {

using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;

// While the head cannot be reached, the first failed try is logged, then one in this.
constexpr std::chrono::seconds connect_warning_interval{10};

struct worker_link_state {
  worker_link_options options;
  transport::ucx_transport* transport = nullptr;
  peer_id head = 0;          // the connected head (0: none); head_connected is 1 while there is one
  metrics::gauge* head_connected = nullptr;
  peer_id connecting = 0;    // a connect() in progress
  peer_id closing = 0;       // a head this link is closing (its peer_down brings the reconnect)
  std::uint64_t failed_connects = 0;   // since the last connection to the head
  caf::actor_clock::time_point next_connect_warning{};
  std::vector<caf::actor> batchers;   // by local index; null while down
  // The batchers know a sequence by an id of this link's (never reused), not the head's:
  // after the head is lost, what the old sequences still send (their cancelled finals)
  // cannot be taken for a request of the next connection's head, whose ids start over.
  struct forwarded {
    std::uint64_t head_id = 0;
    std::uint32_t attempt = 0;
    std::int32_t replica = 0;
  };
  std::uint64_t next_local_id = 0;
  std::unordered_map<std::uint64_t, forwarded> by_local;                  // this connection's sequences
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> by_head;  // head id -> its local ids
  worker_link_stats stats;
  static inline const char* name = "dsrt.worker_link";
};

using self_ptr = caf::stateful_actor<worker_link_state>*;

void close_head(self_ptr self, const std::string& why);

// A frame that cannot be queued would leave a hole in some stream: the connection goes
// instead, and the head retries or resumes this node's attempts elsewhere.
void to_head(self_ptr self, transport::frame_bytes frame) {
  auto& st = self->state;
  if (st.head == 0) {
    ++st.stats.dropped;
    return;
  }
  if (auto s = st.transport->send(st.head, std::move(frame)); !s) {
    ++st.stats.dropped;
    close_head(self, s.err().to_string());
  }
}

caf::actor* batcher_of(self_ptr self, std::int32_t replica) {
  auto& st = self->state;
  const auto i = replica - st.options.replica_base;
  if (i < 0 || i >= std::int32_t(st.batchers.size()) || !st.batchers[std::size_t(i)]) return nullptr;
  return &st.batchers[std::size_t(i)];
}

void forget(worker_link_state& st, std::uint64_t local) {
  const auto it = st.by_local.find(local);
  if (it == st.by_local.end()) return;
  if (auto h = st.by_head.find(it->second.head_id); h != st.by_head.end()) {
    std::erase(h->second, local);
    if (h->second.empty()) st.by_head.erase(h);
  }
  st.by_local.erase(it);
}

// Stops every sequence forwarded on the connection that was lost and forgets them: the
// head gave those attempts up, and a new head's ids start over.
void cancel_forwarded(self_ptr self) {
  auto& st = self->state;
  for (const auto& [local, f] : st.by_local)
    if (auto* b = batcher_of(self, f.replica)) self->send(*b, cancel_atom::value, local);
  st.stats.cancelled_on_head_loss += std::int64_t(st.by_local.size());
  st.by_local.clear();
  st.by_head.clear();
}

void connect(self_ptr self) {
  auto& st = self->state;
  st.connecting = st.transport->connect(st.options.head_host, st.options.head_port);
}

// Ends this link's side of the head connection now — what it runs for that head is
// cancelled and nothing more of that head is read or sent — and closes it; its peer_down
// brings the reconnect.
void close_head(self_ptr self, const std::string& why) {
  auto& st = self->state;
  const auto peer = st.head;
  cancel_forwarded(self);
  st.head = 0;
  st.head_connected->set(0);
  st.closing = peer;
  st.transport->close(peer, why);
}

// The head sent what it never may (an unreadable frame, one of another role): the
// connection closes, as for any peer (CLUSTER.md).
void drop_head(self_ptr self, const std::string& why) {
  spdlog::error("worker: closing the connection to the head, which broke the protocol: {}", why);
  ++self->state.stats.protocol_violations;
  close_head(self, why);
}

void on_frame(self_ptr self, transport::decoded_frame& f) {
  auto& st = self->state;
  switch (f.type()) {
    case frame_type::replica_request: {
      auto r = transport::decode_replica_request(f, transport::clock_anchor::now());
      if (!r) return drop_head(self, "an unreadable replica request: " + r.err().to_string());
      if (auto* b = batcher_of(self, r->replica)) {
        // An older attempt still here was given up by the router: it goes.
        if (auto h = st.by_head.find(r->request_id); h != st.by_head.end())
          for (const auto local : std::vector<std::uint64_t>(h->second)) {
            const auto& old = st.by_local.at(local);
            if (old.attempt >= r->attempt) continue;
            if (auto* ob = batcher_of(self, old.replica)) self->send(*ob, cancel_atom::value, local);
            forget(st, local);
          }
        const auto local = ++st.next_local_id;
        st.by_local[local] = {r->request_id, r->attempt, r->replica};
        st.by_head[r->request_id].push_back(local);
        r->request_id = local;
        r->sequence.id = local;
        self->send(*b, std::move(*r));
      } else {
        to_head(self, transport::encode(replica_final{r->request_id, r->attempt, r->replica,
                                                      make_error(error_code::unavailable, "replica {} is down", r->replica),
                                                      finish_reason::length}));
      }
      return;
    }
    case frame_type::replica_cancel: {
      auto id = transport::decode_cancel(f);
      if (!id) return drop_head(self, "an unreadable replica cancel: " + id.err().to_string());
      if (auto h = st.by_head.find(*id); h != st.by_head.end())
        for (const auto local : h->second)
          if (auto* b = batcher_of(self, st.by_local.at(local).replica)) self->send(*b, cancel_atom::value, local);
      return;
    }
    default:
      drop_head(self, fmt::format("a head may not send a worker {}", transport::frame_type_name(f.type())));
  }
}

caf::behavior worker_link_actor(self_ptr self, transport::ucx_transport* transport, worker_link_options options) {
  auto& st = self->state;
  st.transport = transport;
  if (!options.metrics) options.metrics = std::make_shared<metrics::registry>();
  st.options = options;
  st.head_connected = &options.metrics->gauge("dsrt_head_connected", "1 while this worker node is connected to its head");
  st.batchers.resize(std::size_t(options.replicas));
  connect(self);
  return {
      [self](peer_up_msg& m) {
        auto& st = self->state;
        if (m.peer != st.connecting || m.hello.role != transport::node_role::head) {
          st.transport->close(m.peer, "a worker talks to its head only");
          return;
        }
        st.head = m.peer;
        st.head_connected->set(1);
        st.connecting = 0;
        st.failed_connects = 0;
        ++st.stats.connects;
        spdlog::info("worker: connected to the head (incarnation {})", m.hello.incarnation);
        for (std::size_t i = 0; i < st.batchers.size(); ++i)
          if (st.batchers[i])
            to_head(self, transport::encode(transport::replica_up_wire{st.options.replica_base + std::int32_t(i),
                                                                        to_string(st.batchers[i].address())}));
      },
      [self](peer_down_msg& m) {
        auto& st = self->state;
        if (m.peer == st.closing) {   // ended on this side already (close_head)
          st.closing = 0;
          if (st.connecting == 0) self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value);
          return;
        }
        if (m.peer != st.head && m.peer != st.connecting) return;
        if (m.peer == st.head) {
          spdlog::warn("worker: lost the head: {}", m.why.to_string());
          cancel_forwarded(self);
        } else if (const auto now = self->clock().now(); ++st.failed_connects == 1 || now >= st.next_connect_warning) {
          spdlog::warn("worker: cannot reach the head at {}:{}: {} ({} tries; trying again every {} ms)",
                       st.options.head_host, st.options.head_port, m.why.to_string(), st.failed_connects,
                       st.options.reconnect_interval_ms.count());
          st.next_connect_warning = now + connect_warning_interval;
        }
        st.head = 0;
        st.head_connected->set(0);
        st.connecting = 0;
        self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value);
      },
      [self](reconnect_atom) {
        if (self->state.head == 0 && self->state.connecting == 0) connect(self);
      },
      [self](frame_msg& m) {
        if (m.peer == self->state.head) on_frame(self, *m.frame);
      },
      [self](tensor_msg& m) {   // the head sends none: it breaks the protocol
        if (m.peer == self->state.head) return drop_head(self, "a tensor sent to a worker's link");
        self->state.transport->close(m.peer, "a tensor sent to a worker's link");
      },
      [self](replica_up& up) {
        auto& st = self->state;
        const auto i = up.replica - st.options.replica_base;
        if (i < 0 || i >= std::int32_t(st.batchers.size())) return;
        st.batchers[std::size_t(i)] = up.batcher;
        to_head(self, transport::encode(transport::replica_up_wire{up.replica, to_string(up.batcher.address())}));
      },
      [self](replica_down& down) {
        auto& st = self->state;
        if (auto* b = batcher_of(self, down.replica)) *b = nullptr;
        // Its sequences went with it (the head hears replica_down and moves them).
        std::vector<std::uint64_t> gone;
        for (const auto& [local, f] : st.by_local)
          if (f.replica == down.replica) gone.push_back(local);
        for (const auto local : gone) forget(st, local);
        to_head(self, transport::encode(transport::replica_down_wire{down.replica, down.permanent, down.reason}));
      },
      [self](replica_chunks& c) {
        // In the head's ids; chunks of sequences this connection did not forward are stale.
        auto& st = self->state;
        std::erase_if(c.chunks, [&](replica_chunk& chunk) {
          const auto it = st.by_local.find(chunk.request_id);
          if (it == st.by_local.end()) {
            ++st.stats.stale;
            return true;
          }
          chunk.request_id = it->second.head_id;
          return false;
        });
        if (!c.chunks.empty()) to_head(self, transport::encode(c));
      },
      [self](replica_final& f) {
        auto& st = self->state;
        const auto it = st.by_local.find(f.request_id);
        if (it == st.by_local.end()) {
          ++st.stats.stale;
          return;
        }
        const auto local = f.request_id;
        f.request_id = it->second.head_id;
        replace_id(f.failure, local, f.request_id);
        forget(st, local);
        to_head(self, transport::encode(f));
      },
      [self](status_atom) {
        auto s = self->state.stats;
        s.connected = self->state.head != 0;
        return s;
      },
  };
}

}  // namespace

caf::actor spawn_worker_link(caf::actor_system& system, transport::ucx_transport& transport,
                             worker_link_options options) {
  return system.spawn(worker_link_actor, &transport, std::move(options));
}

}  // namespace dsrt::actors
