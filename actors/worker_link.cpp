#include "actors/worker_link.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "transport/wire.h"

namespace dsrt::actors {

using transport::frame_type;
using transport::peer_id;

namespace {

using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;

struct worker_link_state {
  worker_link_options options;
  transport::ucx_transport* transport = nullptr;
  peer_id head = 0;          // the connected head (0: none)
  peer_id connecting = 0;    // a connect() in progress
  std::vector<caf::actor> batchers;   // by local index; null while down
  worker_link_stats stats;
  static inline const char* name = "dsrt.worker_link";
};

using self_ptr = caf::stateful_actor<worker_link_state>*;

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
    st.transport->close(st.head, s.err().to_string());
  }
}

caf::actor* batcher_of(self_ptr self, std::int32_t replica) {
  auto& st = self->state;
  const auto i = replica - st.options.replica_base;
  if (i < 0 || i >= std::int32_t(st.batchers.size()) || !st.batchers[std::size_t(i)]) return nullptr;
  return &st.batchers[std::size_t(i)];
}

void connect(self_ptr self) {
  auto& st = self->state;
  st.connecting = st.transport->connect(st.options.head_host, st.options.head_port);
}

void on_frame(self_ptr self, transport::decoded_frame& f) {
  auto& st = self->state;
  switch (f.type()) {
    case frame_type::replica_request: {
      auto r = transport::decode_replica_request(f, transport::clock_anchor::now());
      if (!r) {
        spdlog::error("worker: unreadable replica request from the head: {}", r.err().to_string());
        return;
      }
      if (auto* b = batcher_of(self, r->replica)) {
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
      if (!id) return;
      for (auto& b : st.batchers)
        if (b) self->send(b, cancel_atom::value, *id);
      return;
    }
    default:
      spdlog::warn("worker: ignoring a {} frame from the head", transport::frame_type_name(f.type()));
  }
}

caf::behavior worker_link_actor(self_ptr self, transport::ucx_transport* transport, worker_link_options options) {
  auto& st = self->state;
  st.transport = transport;
  st.options = options;
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
        st.connecting = 0;
        ++st.stats.connects;
        spdlog::info("worker: connected to the head (incarnation {})", m.hello.incarnation);
        for (std::size_t i = 0; i < st.batchers.size(); ++i)
          if (st.batchers[i])
            to_head(self, transport::encode(transport::replica_up_wire{st.options.replica_base + std::int32_t(i),
                                                                        to_string(st.batchers[i].address())}));
      },
      [self](peer_down_msg& m) {
        auto& st = self->state;
        if (m.peer != st.head && m.peer != st.connecting) return;
        if (m.peer == st.head) spdlog::warn("worker: lost the head: {}", m.why.to_string());
        st.head = 0;
        st.connecting = 0;
        self->delayed_send(self, st.options.reconnect_interval_ms, reconnect_atom::value);
      },
      [self](reconnect_atom) {
        if (self->state.head == 0 && self->state.connecting == 0) connect(self);
      },
      [self](frame_msg& m) {
        if (m.peer == self->state.head) on_frame(self, *m.frame);
      },
      [self](replica_up& up) {
        auto& st = self->state;
        const auto i = up.replica - st.options.replica_base;
        if (i < 0 || i >= std::int32_t(st.batchers.size())) return;
        st.batchers[std::size_t(i)] = up.batcher;
        to_head(self, transport::encode(transport::replica_up_wire{up.replica, to_string(up.batcher.address())}));
      },
      [self](replica_down& down) {
        if (auto* b = batcher_of(self, down.replica)) *b = nullptr;
        to_head(self, transport::encode(transport::replica_down_wire{down.replica, down.permanent, down.reason}));
      },
      [self](replica_chunks& c) { to_head(self, transport::encode(c)); },
      [self](replica_final& f) { to_head(self, transport::encode(f)); },
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
