#pragma once
// The process's UCX endpoint (ARCHITECTURE.md, "Messages and transport"): a ucp worker for
// the connections (a listener, an endpoint per peer) and data workers for data endpoints
// (below), all driven by one progress thread, frames as UCX active messages. UCX picks the wire — TCP or shared memory on one machine, RDMA verbs where a
// cluster has them; nothing here names one. Large frames go by UCX rendezvous straight into
// the receive buffer; bulk tensors (send_tensor) travel as the payload of an active message
// whose header is their frame, from the sender's buffer into the receiver's.
//
// The data endpoint: once a connection is up, each side tells the other where to send it
// tensors and frames (a DataEndpoint frame: its data worker's address, its host key and its
// process). A peer on the same host that offered an address too opens a second endpoint from
// that address, sends a DataFrames frame on the connection, and from then on sends its tensors and its frames (send(), and its goodbye)
// there, the connection's token in front of each, so UCX can use shared memory and CMA (the
// connection's own endpoint, made from a socket address with peer-failure handling, gets
// TCP lanes only from UCX 1.13: never CMA, and shared memory only with
// UCX_{SYSV,POSIX}_ERROR_HANDLING set). The receiver holds what comes over its data endpoint
// until it has read the DataFrames, so frames arrive in the order they were sent across the
// switch; tensors keep their own order, and their order with frames only once both take the
// data endpoint (match them by tag). The session's own frames (handshake,
// heartbeats) stay on the connection. The token is derived from the handshake by both
// sides (auth.h data_token) and never sent. Failure detection stays with the connection:
// the data endpoint is closed with it. An authenticated peer is trusted with the worker
// address it gives.
//
// Closing: a side that closes a connection (close(), or stopping) sends its goodbye after
// its frames and disconnects once its sends have finished (a rendezvous frame the peer has
// yet to fetch included; at most 2 s); a side whose connection is lost still handles what
// arrived before. So what was sent before a close arrives, whichever endpoint it took.
//
// Every connection runs a peer_session (peer_session.h): nothing reaches the handler from a
// peer that has not proved the cluster secret, a malformed frame closes its connection (and
// only that one), and heartbeats turn a dead or paused peer into on_peer_down.
//
// Ownership: owns the UCX context, worker, listener and endpoints and the progress thread.
// Thread safety: connect(), send(), close() and stats() may be called from any thread; they
// wake the progress thread only when it sleeps. On the progress thread itself (a handler
// callback, or an actor it runs) send() posts the frame at once unless commands queued
// before it still wait (they go first). The
// handler's callbacks run on the progress thread, one at a time: they must be quick (hand
// the frame to an actor) and must not call back into this object's destructor.
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "transport/peer_session.h"
#include "transport/tensor_buffer.h"

namespace dsrt::transport {

// One connection, for as long as it lives; never reused (a reconnecting peer gets a new id,
// so nothing of the old connection can be mistaken for the new one).
using peer_id = std::uint64_t;

class transport_handler {
 public:
  virtual ~transport_handler() = default;
  // The peer proved the secret; frames may be sent to it from now on.
  virtual void on_peer_up(peer_id peer, const hello_wire& hello) = 0;
  // A frame other than the session's own (hello, proof, heartbeat, goodbye).
  virtual void on_frame(peer_id peer, decoded_frame frame) = 0;
  // A bulk tensor (send_tensor()): its header and its bytes, received by rendezvous
  // straight into `data` (no copy on our side; huge pages when large).
  virtual void on_tensor(peer_id peer, tensor_header_wire header, tensor_buffer data) = 0;
  // The connection is gone. Called once for every connection that was up, and for every
  // connect() that never came up (so the caller can retry).
  virtual void on_peer_down(peer_id peer, const error& why) = 0;
  // After each round of the callbacks above (and once more when the transport stops), on the
  // progress thread, before it sleeps: work a callback deferred is done here, and what it
  // sends goes out at once (after commands other threads queued before it), waking nothing.
  virtual void after_callbacks() {}
};

struct transport_config {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;             // 0: a free port (port() tells which)
  bool listen = true;                        // false: connect only (a client)
  session_config session;
  std::size_t connections_max = 1024;        // more are refused at the listener
  std::size_t handshakes_max = 64;           // accepted, not yet proven; a new one closes the oldest
  std::size_t send_queue_frames_max = 1u << 16;   // frames queued for the progress thread
  std::size_t peer_sends_in_flight_max = 1u << 14; // unfinished sends per peer; more: the
                                                   // peer is not reading and is closed
  // Of those, at most this many posted on a connection's data endpoint; the rest wait in the
  // connection, in order, until UCX finishes earlier ones. UCX never hands back a send to a
  // peer that died, or that dropped its data worker, with its shared-memory FIFO full: a
  // client paused past its heartbeat timeout left ~7,400 sends (~5 MB) in a head for each
  // pause, for as long as the client lived. 1 .. peer_sends_in_flight_max.
  std::size_t data_sends_posted_max = 256;
  std::uint64_t tensor_bytes_max = 4ull << 30;    // one tensor's payload; larger: the peer is closed
  // Bytes one peer may have arrived or arriving and not yet handled (tensors being fetched,
  // frames behind them); more: the peer is closed (OVERLOADED). Before a peer has proved the
  // secret nothing over a few KiB is fetched at all (ucx_receive.cpp).
  std::uint64_t inbound_bytes_max = 6ull << 30;
  bool data_endpoints = true;                // offer and use data endpoints on one host (above)
  // UCX 1.13 never destroys a data endpoint that both sides wired to each other (a
  // flushing close leaves it until its worker goes, and a forced close needs peer-failure
  // handling, which would take shared memory and CMA from it); each keeps its peer's shared
  // memory mapped: ~4 MiB of address space, two mappings and ~50 KiB resident. So data
  // endpoints live in data workers, data_endpoints_per_worker connections each (clients'
  // apart from nodes'), and a data worker whose connections are all gone is destroyed with
  // them (also when only sends to peers that have ended are left): a head with clients
  // coming and going holds the endpoints of its live connections' workers, not of every
  // client it ever had. Past data_endpoints_max held at once (checked as connections are
  // given workers, so those in their handshake may pass it), new connections keep their
  // traffic on the connection's endpoint (TCP) until workers are destroyed.
  std::size_t data_endpoints_per_worker = 64;   // 1 .. data_endpoints_per_worker_max
  std::size_t data_endpoints_max = 1024;
  milliseconds tick_interval_ms{20};         // heartbeat and deadline checks
  // After traffic (a frame sent or handed on; heartbeats do not count) the progress thread
  // polls this long before it sleeps again (0: it sleeps at once). Polling spends a core
  // while it lasts, and spares the wake-up of a sleeping thread on each message: for hosts
  // with cores to spare (docs/PERFORMANCE.md, "Transport").
  std::chrono::microseconds busy_poll_us{0};
};
// The most connections one data worker may take (validate()): no more than a process's
// connections_max could use.
inline constexpr std::size_t data_endpoints_per_worker_max = 4096;

// invalid_argument naming the field.
status validate(const transport_config& config);

struct transport_stats {
  std::uint64_t frames_sent = 0, frames_received = 0;
  std::uint64_t bytes_sent = 0, bytes_received = 0;
  std::uint64_t peers_up = 0;
  std::uint64_t peers_rejected = 0;   // connected here but ended before proving the secret,
                                      // or refused at the listener (connections_max)
  std::uint64_t frames_dropped = 0;   // for a peer that is not up (any more), or a tensor
                                      // whose token names no connection
  std::uint64_t data_endpoints = 0;   // connections whose tensors took a data endpoint
                                      // (all so far; data_endpoints_max bounds those held)
  std::uint64_t tensors_direct = 0;   // tensors sent over a data endpoint
  std::uint64_t frames_direct = 0;    // frames sent over a data endpoint (send() and goodbyes)
  std::uint64_t tensors_waited = 0;   // tensors queued to wait for the peer's DataEndpoint
  std::uint64_t closes_pending = 0;   // endpoint closes not finished yet (now, not a total)
  std::uint64_t sleeps = 0;           // times the progress thread went to sleep (with busy
                                      // polling: windows that ran out)
  std::uint64_t stalls = 0;           // times this process had not run for longer than two
                                      // heartbeat intervals (peers' silence then excused)
  std::uint64_t data_workers = 0;     // data workers now (ucx_transport_impl.h data_worker)
  std::uint64_t data_workers_destroyed = 0;   // with the endpoints UCX kept in them
  std::uint64_t data_sends_waiting = 0;   // now: sends waiting in connections for data_sends_posted_max
  std::uint64_t sends_stuck = 0;          // now: sends of gone connections UCX has not finished
                                          // (to a peer not reading, or gone with its FIFO full)
};

class ucx_transport {
 public:
  // Errors: invalid_argument for a bad config; unavailable when UCX cannot start or the
  // listen address cannot be bound.
  static result<std::unique_ptr<ucx_transport>> start(const transport_config& config,
                                                      const cluster_secret& secret, node_identity self,
                                                      transport_handler& handler);
  ~ucx_transport();   // closes every connection and joins the progress thread
  ucx_transport(const ucx_transport&) = delete;
  ucx_transport& operator=(const ucx_transport&) = delete;

  std::uint16_t port() const;   // the listening port (0 when not listening)
  // Opens a connection; on_peer_up or on_peer_down follows. host: an IPv4 address or name.
  peer_id connect(const std::string& host, std::uint16_t port);
  // Queues a frame for an up peer. Errors: overloaded when send_queue_frames_max frames
  // are queued already. A frame for a peer that is down is dropped (counted).
  status send(peer_id peer, frame_bytes frame);
  // Queues a bulk tensor for an up peer: the header as a frame and `data` as the payload
  // of the same active message, sent from `data` itself (UCX rendezvous for large ones;
  // nothing copied on our side), over the data endpoint when there is one; until the peer's
  // DataEndpoint has arrived it waits in the connection. `owner` keeps `data` alive until
  // the send completes.
  // header.bytes is set to data.size(). Errors: overloaded as for send(); invalid_argument
  // when data exceeds tensor_bytes_max.
  status send_tensor(peer_id peer, tensor_header_wire header, std::shared_ptr<const void> owner,
                     std::span<const std::byte> data);
  // Says goodbye and closes; on_peer_down follows.
  void close(peer_id peer, std::string reason);
  transport_stats stats() const;

  class impl;

 private:
  explicit ucx_transport(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

}  // namespace dsrt::transport
