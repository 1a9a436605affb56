#include "actors/head_link.h"

#include <spdlog/spdlog.h>

#include <map>
#include <unordered_map>

#include "actors/id_text.h"
#include "transport/wire.h"

namespace dsrt::actors {

using transport::frame_type;
using transport::node_role;
using transport::peer_id;

namespace {

// Stands in for a remote replica's batcher: what the router sends it goes out as frames.
// If the frame cannot be queued, the router hears at once that the attempt failed.
caf::behavior batcher_proxy(caf::event_based_actor* self, transport::ucx_transport* transport, peer_id peer,
                            std::int32_t replica) {
  return {
      [=](replica_request& r) {
        r.replica = replica;
        const auto id = r.request_id;
        const auto attempt = r.attempt;
        if (auto s = transport->send(peer, transport::encode(r, transport::clock_anchor::now())); !s)
          self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                     replica_final{id, attempt, replica, s.err(), finish_reason::length});
      },
      [=](cancel_atom, std::uint64_t id) {
        (void)transport->send(peer, transport::encode_cancel(frame_type::replica_cancel, id));
      },
  };
}

struct worker_peer {
  transport::hello_wire hello;
  std::map<std::int32_t, caf::actor> proxies;   // replica -> its proxy
};

struct remote_request {
  peer_id peer = 0;
  std::uint64_t client_id = 0;
};

struct head_link_state {
  transport::ucx_transport* transport = nullptr;
  caf::actor router;
  std::unordered_map<peer_id, worker_peer> workers;
  std::unordered_map<peer_id, transport::hello_wire> clients;
  std::unordered_map<std::uint64_t, remote_request> requests;           // head id -> client's
  std::map<std::pair<peer_id, std::uint64_t>, std::uint64_t> by_client;   // client's -> head id
  std::uint64_t next_id = 0;   // remote requests' router ids are remote_id_bit | next_id
  head_link_stats stats;
  std::shared_ptr<metrics::registry> metrics;   // the gauges' (the node's registry)
  metrics::gauge* workers_connected = nullptr;
  metrics::gauge* clients_connected = nullptr;
  static inline const char* name = "dsrt.head_link";
};

using self_ptr = caf::stateful_actor<head_link_state>*;

// Apps on the head feed the same router through head_node::next_request_id(), counting
// from 1: remote requests' ids carry the top bit, so the two never meet.
constexpr std::uint64_t remote_id_bit = std::uint64_t{1} << 63;

void reject(self_ptr self, peer_id peer, const std::string& why) {
  spdlog::warn("head: disconnecting peer {}: {}", peer, why);
  ++self->state.stats.rejected_peers;
  self->state.transport->close(peer, why);
}

// A client whose stream cannot be queued is cut off rather than sent a stream with a hole:
// its side ends the open requests that had output with UNAVAILABLE when the connection
// goes (and sends the others again: actors/client_link.h).
void send_to_client(self_ptr self, peer_id peer, transport::frame_bytes frame) {
  if (auto s = self->state.transport->send(peer, std::move(frame)); !s) reject(self, peer, s.err().to_string());
}

void worker_gone(self_ptr self, worker_peer& w, const std::string& why) {
  for (auto& [replica, proxy] : w.proxies) {
    self->send(self->state.router, replica_down{replica, false, why});
    self->send_exit(proxy, caf::exit_reason::user_shutdown);
  }
  w.proxies.clear();
}

void on_worker_frame(self_ptr self, peer_id peer, worker_peer& w, transport::decoded_frame& f) {
  auto& st = self->state;
  switch (f.type()) {
    case frame_type::replica_up: {
      auto up = transport::decode_replica_up(f);
      if (!up) return reject(self, peer, up.err().to_string());
      auto& proxy = w.proxies[up->replica];
      if (proxy) self->send_exit(proxy, caf::exit_reason::user_shutdown);   // restarted there
      proxy = self->spawn(batcher_proxy, st.transport, peer, up->replica);
      spdlog::info("head: replica {} up on node {} (peer {})", up->replica, w.hello.node_id, peer);
      self->send(st.router, replica_up{up->replica, proxy});
      return;
    }
    case frame_type::replica_down: {
      auto down = transport::decode_replica_down(f);
      if (!down) return reject(self, peer, down.err().to_string());
      auto it = w.proxies.find(down->replica);
      if (it == w.proxies.end()) return;
      self->send(st.router, replica_down{down->replica, down->permanent, down->reason});
      self->send_exit(it->second, caf::exit_reason::user_shutdown);
      w.proxies.erase(it);
      return;
    }
    case frame_type::replica_chunks: {
      auto chunks = transport::decode_replica_chunks(f);
      if (!chunks) return reject(self, peer, chunks.err().to_string());
      std::erase_if(chunks->chunks, [&](const replica_chunk& c) { return !w.proxies.count(c.replica); });
      if (!chunks->chunks.empty()) self->send(st.router, std::move(*chunks));
      return;
    }
    case frame_type::replica_final: {
      auto final = transport::decode_replica_final(f);
      if (!final) return reject(self, peer, final.err().to_string());
      if (w.proxies.count(final->replica)) self->send(st.router, std::move(*final));
      else ++st.stats.dropped_frames;
      return;
    }
    case frame_type::replica_status:
      return;   // progress reports: the worker's own watchdog acts on them
    default:
      return reject(self, peer, fmt::format("a worker may not send {}", transport::frame_type_name(f.type())));
  }
}

void on_client_frame(self_ptr self, peer_id peer, transport::decoded_frame& f) {
  auto& st = self->state;
  switch (f.type()) {
    case frame_type::generate: {
      auto r = transport::decode_generate_request(f, transport::clock_anchor::now());
      if (!r) {
        // A readable frame with bad values gets a typed final under the client's id (the
        // client waits for it); an unreadable one, the door.
        if (r.err().code != error_code::invalid_argument) return reject(self, peer, r.err().to_string());
        auto client_id = transport::decode_generate_request_id(f);
        if (!client_id) return reject(self, peer, client_id.err().to_string());
        serving::final_message bad;
        bad.request_id = *client_id;
        bad.failure = r.err();
        send_to_client(self, peer, transport::encode(bad));
        return;
      }
      const auto key = std::make_pair(peer, r->request_id);
      if (st.by_client.count(key)) {
        serving::final_message dup;
        dup.request_id = r->request_id;
        dup.failure = make_error(error_code::invalid_argument, "request id {} is already in flight", r->request_id);
        send_to_client(self, peer, transport::encode(dup));
        return;
      }
      const auto id = remote_id_bit | ++st.next_id;
      st.requests[id] = remote_request{peer, r->request_id};
      st.by_client[key] = id;
      ++st.stats.remote_requests;
      r->request_id = id;
      self->send(st.router, std::move(*r));
      return;
    }
    case frame_type::cancel: {
      auto id = transport::decode_cancel(f);
      if (!id) return reject(self, peer, id.err().to_string());
      if (auto it = st.by_client.find({peer, *id}); it != st.by_client.end())
        self->send(st.router, cancel_atom::value, it->second);
      return;
    }
    default:
      return reject(self, peer, fmt::format("a client may not send {}", transport::frame_type_name(f.type())));
  }
}

// The peer gauges after a peer came or went.
void count_peers(head_link_state& st) {
  st.workers_connected->set(double(st.workers.size()));
  st.clients_connected->set(double(st.clients.size()));
}

caf::behavior head_link_actor(self_ptr self, transport::ucx_transport* transport, caf::actor router,
                              std::shared_ptr<metrics::registry> metrics) {
  auto& st = self->state;
  st.transport = transport;
  st.router = std::move(router);
  st.metrics = metrics ? std::move(metrics) : std::make_shared<metrics::registry>();
  st.workers_connected = &st.metrics->gauge("dsrt_worker_nodes_connected", "worker nodes connected to the head");
  st.clients_connected = &st.metrics->gauge("dsrt_clients_connected", "remote clients connected to the head");
  return {
      [self](peer_up_msg& m) {
        auto& st = self->state;
        if (m.hello.role == node_role::worker) {
          // The same node back with a new incarnation: its old connection is stale.
          for (auto& [peer, w] : st.workers)
            if (w.hello.node_id == m.hello.node_id && peer != m.peer) {
              worker_gone(self, w, "node restarted");
              st.transport->close(peer, "replaced by a newer incarnation");
            }
          st.workers[m.peer].hello = m.hello;
          spdlog::info("head: worker node {} connected (incarnation {}, peer {})", m.hello.node_id,
                       m.hello.incarnation, m.peer);
        } else if (m.hello.role == node_role::client) {
          st.clients[m.peer] = m.hello;
        } else {
          reject(self, m.peer, "a second head");
        }
        count_peers(st);
      },
      [self](frame_msg& m) {
        auto& st = self->state;
        if (auto w = st.workers.find(m.peer); w != st.workers.end())
          return on_worker_frame(self, m.peer, w->second, *m.frame);
        if (st.clients.count(m.peer)) return on_client_frame(self, m.peer, *m.frame);
        ++st.stats.dropped_frames;   // a connection already replaced or gone
      },
      // No role sends the head tensors: a peer that does breaks the protocol.
      [self](tensor_msg& m) { reject(self, m.peer, "a tensor sent to the head"); },
      [self](peer_down_msg& m) {
        auto& st = self->state;
        if (auto w = st.workers.find(m.peer); w != st.workers.end()) {
          spdlog::warn("head: worker node {} lost: {}", w->second.hello.node_id, m.why.to_string());
          worker_gone(self, w->second, m.why.to_string());
          st.workers.erase(w);
        } else if (st.clients.erase(m.peer)) {
          // Its requests are cancelled; their finals find no client and are dropped.
          for (auto it = st.by_client.lower_bound({m.peer, 0}); it != st.by_client.end() && it->first.first == m.peer; ++it)
            self->send(st.router, cancel_atom::value, it->second);
        }
        count_peers(st);
      },
      [self](token_chunk& c) {
        auto& st = self->state;
        auto it = st.requests.find(c.request_id);
        if (it == st.requests.end() || !st.clients.count(it->second.peer)) return;
        c.request_id = it->second.client_id;
        send_to_client(self, it->second.peer, transport::encode(c));
      },
      [self](final_message& f) {
        auto& st = self->state;
        auto it = st.requests.find(f.request_id);
        if (it == st.requests.end()) return;
        const auto where = it->second;
        st.by_client.erase({where.peer, where.client_id});
        st.requests.erase(it);
        if (!st.clients.count(where.peer)) return;
        replace_id(f.failure, f.request_id, where.client_id);
        f.request_id = where.client_id;
        send_to_client(self, where.peer, transport::encode(f));
      },
      [self](status_atom) {
        auto s = self->state.stats;
        s.workers = std::int32_t(self->state.workers.size());
        s.clients = std::int32_t(self->state.clients.size());
        s.open_requests = std::int64_t(self->state.requests.size());
        return s;
      },
  };
}

}  // namespace

caf::actor spawn_head_link(caf::actor_system& system, transport::ucx_transport& transport, caf::actor router,
                           std::shared_ptr<metrics::registry> metrics) {
  return system.spawn(head_link_actor, &transport, std::move(router), std::move(metrics));
}

}  // namespace dsrt::actors
