#pragma once
// Private to dsrt_transport: ucx_transport's implementation (the public interface and the
// design are in ucx_transport.h). One class, its definitions split by what they do:
//   ucx_transport.cpp    starting, the progress loop, the command queue, the public API
//   ucx_send.cpp         connecting, sessions, frames and tensors out, data endpoints
//   ucx_receive.cpp      active messages in, the inbox, rendezvous fetches, session actions
//   ucx_connections.cpp  the listener's side, endpoint errors, closing, reaping, stopping
//   ucx_data_workers.cpp the data endpoints' workers: made, polled, destroyed
// Everything below runs on the progress thread unless its comment says otherwise.
#include <poll.h>
#include <ucp/api/ucp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "transport/ucx_transport.h"

namespace dsrt::transport {

constexpr unsigned frame_am_id = 1;    // every frame travels as this active message
constexpr unsigned tensor_am_id = 2;   // a tensor: its header frame as the AM header, its bytes as the data
constexpr unsigned direct_tensor_am_id = 3;   // the same over a data endpoint, the token before the header
constexpr unsigned direct_frame_am_id = 4;    // a frame over a data endpoint: the token as the AM header
constexpr std::size_t token_bytes = sizeof(std::uint64_t);
constexpr std::size_t tensor_header_bytes_max = 4096;   // a TensorHeader frame is ~100 bytes
// A connection this side closes waits for its unfinished sends (a rendezvous frame the peer
// has yet to fetch, the goodbye) before it disconnects, at most this long.
constexpr auto close_flush_wait = std::chrono::seconds(2);
// A stall of this process (tick()) is logged at most this often (each is counted).
constexpr auto stall_warning_interval = std::chrono::seconds(10);
// While every connection's frames take its data endpoint, a busy-polling progress thread
// polls the connections' worker this often (run()): an idle TCP interface's epoll_wait
// costs ~10 turns of polling shared memory.
constexpr auto connection_poll_interval = std::chrono::microseconds(50);
// How often a data worker kept by sends to peers that were alive when their connections
// went checks whether those peers have ended (reading /proc/PID/stat of each), and a
// lingering one whether its time is up.
constexpr auto stuck_peer_check_interval = std::chrono::seconds(1);
// How long a data worker whose connections have all gone is kept at least (polled, taking
// no new connection) before it is destroyed, in a process that does not listen (a client,
// a worker node), and in a head after a stall of its own (below): the peer's sends still
// waiting for its FIFO -- this process was paused past the peer's heartbeat timeout and runs
// again -- arrive in that time and are dropped, instead of holding the peer's sends, and the
// peer's data worker, for as long as this process lives. The while counts only time this process ran (a stall extends it, tick()), is
// extended again while frames of gone connections keep arriving, and ends at the first
// retirement check after it (every stuck_peer_check_interval: 1-2 s in all). A head, whose
// clients come and go, lingers only while a stall of its own is found (a tick overdue by two
// heartbeat intervals) or was found within a heartbeat timeout (its peers dropped it while it was stopped, their frames in its
// FIFOs): otherwise its workers would hold the endpoints of many gone clients at once
// (data_endpoints_max).
constexpr auto data_worker_linger = std::chrono::seconds(1);
// An idle turn of a busy-polling thread costs about one clock read: the clock is read after
// turns that did something and once per this many idle ones (~1 us; its timers are ms).
constexpr int idle_turns_per_clock_read = 16;

struct send_cmd { peer_id peer; frame_bytes frame; };
struct connect_cmd { peer_id peer; std::string host; std::uint16_t port; };
struct close_cmd { peer_id peer; std::string reason; };
struct tensor_cmd {
  peer_id peer;
  frame_bytes header;
  std::shared_ptr<const void> owner;
  std::span<const std::byte> data;
};
using command = std::variant<send_cmd, connect_cmd, close_cmd, tensor_cmd>;

// A frame as it arrived: eager data is copied at once; rendezvous data is fetched into
// `bytes` after the callback and `ready` is set when it is there.
struct inbound {
  frame_bytes bytes;               // the frame
  tensor_buffer tensor_data;       // a tensor's payload
  frame_bytes tensor_header;       // a tensor's header frame (empty: a plain frame)
  bool tensor = false;
  bool ready = false;
  bool failed = false;
  // Rendezvous data not fetched yet: it arrived before the peer had proved the secret, and
  // is fetched (or refused) when it reaches the front of the inbox, from the worker it
  // arrived on.
  void* rndv_desc = nullptr;
  ucp_worker_h rndv_worker = nullptr;
  std::size_t length = 0;          // the payload's bytes, as the peer announced them
};

// What one active message sends; it lives until UCX has finished with its bytes.
struct outgoing {
  frame_bytes header;                  // the AM header (tensors)
  frame_bytes payload;                 // the data, when owned here (frames)
  std::shared_ptr<const void> owner;   // the data's owner, when it is the caller's (tensors)
  std::span<const std::byte> external;
  std::optional<std::uint64_t> token;  // the header instead, when it is a data endpoint's token alone
  std::span<const std::byte> data() const { return owner ? external : std::span<const std::byte>(payload); }
  std::span<const std::byte> header_bytes() const {
    if (token) return std::as_bytes(std::span(&*token, 1));
    return header;
  }
};

// A frame the handshake may need before the peer is up (Hello, AuthProof) is far smaller;
// anything larger, or any tensor, from a peer that has not proved the secret closes it
// without a byte fetched.
constexpr std::size_t handshake_frame_bytes_max = 4096;

// A UCX worker for data endpoints (ucx_data_workers.cpp). UCX 1.13 frees a data endpoint
// that both sides wired to each other only with its worker, so connections are given data
// workers in turn, data_endpoints_per_worker each -- clients' apart from nodes', whose
// connections last -- and a worker whose connections are all gone (its sends and fetches
// finished, its endpoint closes done, or only sends to ended peers left) is destroyed with
// the endpoints and shared-memory mappings UCX kept in it.
struct data_worker {
  ucx_transport::impl* self = nullptr;   // its active-message handlers' argument
  bool clients = false;                  // given connections of clients (else of nodes)
  ucp_worker_h worker = nullptr;
  int fd = -1;                       // its event fd (owned by UCX)
  std::vector<std::byte> address;    // offered in DataEndpoint (empty: offers nothing)
  std::size_t connections = 0;       // given this worker so far: full at data_endpoints_per_worker
  std::size_t live_connections = 0;  // of those, not yet forgotten
  std::size_t endpoints = 0;         // data endpoints opened in it (UCX keeps each until it goes)
  // Set when its last connection went, where it lingers (data_worker_linger): from then on it
  // takes no new connection, and it is destroyed once this time has passed
  // (data_worker_linger) and nothing of it is unfinished -- or at once when only sends to
  // ended peers are left (abandoned).
  std::optional<clock_time> linger_until;
  bool dropped_since_check = false;   // a frame with no connection's token arrived (its callbacks)
  std::size_t sends = 0;             // its sends that UCX has not finished
  std::size_t fetches = 0;           // its rendezvous fetches that UCX has not finished
  // Connections forgotten with sends unfinished, by id: their peer and those sends. A peer
  // not reading (stopped) may still take them; one that died with its FIFO full never
  // will. Once every such peer has ended, the worker is destroyed with the sends.
  struct stuck_connection {
    local_process peer;
    std::size_t sends = 0;
  };
  std::unordered_map<peer_id, stuck_connection> stuck;
};

struct connection {
  peer_id id = 0;
  ucp_ep_h ep = nullptr;
  bool connector = false;
  bool reported_up = false;
  bool dead = false;               // closed; waiting to be reported and forgotten
  std::optional<error> why;
  // This side closes it (close(), shutdown): nothing more is sent or handed on, and it is
  // closed once its sends have finished, or at this time.
  std::optional<clock_time> closing_until;
  // UCX reported the connection's endpoint failed (a peer's close included). What arrived
  // before is still handled: the connection is closed with this after one more turn.
  std::optional<error> lost;
  int lost_turns = 0;
  // Tensors (ucx_transport.h): the peer's DataEndpoint decides where ours go; until it has
  // arrived they wait here. data_token names this connection in the tensors we send over
  // data_ep, own_token in those sent to us (auth.h data_token; 0: none).
  bool data_decided = false;
  data_worker* data = nullptr;   // the data worker it was given (offered, or data_ep's)
  local_process peer_process;    // from the peer's DataEndpoint (same host only)
  ucp_ep_h data_ep = nullptr;
  std::uint64_t data_token = 0;
  std::uint64_t own_token = 0;
  std::deque<tensor_cmd> pending_tensors;
  // What arrived over our data endpoint waits here until the peer's DataFrames, sent on the
  // connection before them, has been read (ucx_transport.h); then it joins the inbox.
  bool peer_switched = false;
  std::deque<std::shared_ptr<inbound>> held;
  std::unique_ptr<peer_session> session;
  std::deque<std::shared_ptr<inbound>> inbox;   // in arrival order
  std::size_t inbox_bytes = 0;                  // announced payload bytes in inbox and held
  std::size_t sends_in_flight = 0;          // posted and not finished, or waiting below
  std::size_t direct_sends_in_flight = 0;   // posted on the data endpoint, not finished
  // Data-endpoint sends past data_sends_posted_max wait here, in order, and are posted as
  // UCX finishes earlier ones (post_waiting_sends): a peer that stops reading, or dies with
  // its shared-memory FIFO full, holds at most that many of them in UCX, which never hands
  // such sends back; those waiting here go with the connection.
  struct waiting_send {
    unsigned am_id;
    outgoing out;
  };
  std::deque<waiting_send> direct_waiting;
  bool refill_listed = false;   // on refill_ (a send finished while others wait)
  // In the progress loop's short lists (so a turn's work is per busy connection, not per
  // connection): attention_ (its inbox or a loss needs handling) and ending_ (dead or
  // closing: reap() looks at it).
  bool attended = false;
  bool ending = false;
};

// An arrival seen inside the active-message callback, handled after progress returns
// (UCX forbids closing endpoints or receiving rendezvous data inside its callbacks).
struct arrival {
  ucp_ep_h ep = nullptr;
  peer_id peer = 0;                // known already: it came over a data endpoint
  std::shared_ptr<inbound> item;
  ucp_worker_h worker = nullptr;   // the one it arrived on (for rndv_desc)
  void* rndv_desc = nullptr;
  std::size_t length = 0;
};

inline std::string status_text(ucs_status_t s) { return ucs_status_string(s); }

// A counter only the progress thread adds to and any thread reads: a plain load and store
// (release, so a reader that saw what followed the count sees the count), not a locked
// read-modify-write -- five of those per message cost more than the frame's checksum.
class progress_counter {
 public:
  progress_counter& operator++() { return *this += 1; }
  progress_counter& operator+=(std::uint64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_release);
    return *this;
  }
  progress_counter& operator=(std::uint64_t n) {
    value_.store(n, std::memory_order_release);
    return *this;
  }
  operator std::uint64_t() const { return value_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class ucx_transport::impl {
 public:
  // Any thread (ucx_transport.h says what each does there); the destructor joins the
  // progress thread.
  impl(const transport_config& config, const cluster_secret& secret, node_identity self,
       transport_handler& handler)
      : config_(config), secret_(secret), self_(self), handler_(handler) {}
  ~impl();
  status init();
  std::uint16_t port() const { return port_; }
  peer_id connect(const std::string& host, std::uint16_t port);
  status send(peer_id peer, frame_bytes frame);
  void close(peer_id peer, std::string reason) { enqueue(close_cmd{peer, std::move(reason)}, false); }
  status send_tensor(peer_id peer, tensor_header_wire header, std::shared_ptr<const void> owner,
                     std::span<const std::byte> data);
  transport_stats stats() const;

 private:
  // ---- ucx_transport.cpp: workers, the progress loop, the command queue ----
  // A worker only the progress thread touches, and its event fd.
  // `receives_only`: its event fd is armed for arrivals only, not for sends (run()).
  status make_worker(ucp_worker_h& worker, int& fd, bool receives_only = false);
  status set_handler(ucp_worker_h worker, unsigned am_id, ucp_am_recv_callback_t cb, void* arg);

  // The progress thread takes the command before it sleeps; only a sleeping one is woken
  // (an eventfd write per message otherwise, on the sender's thread).
  bool enqueue(command c, bool bounded);
  void wake();
  void run();

  // Runs the queued commands; false when there were none.
  bool run_commands();

  // One of the application's frames, to an up peer; dropped (counted, false) for any other.
  bool send_now(send_cmd s);

  // ---- ucx_send.cpp: connecting, sessions, frames and tensors out, data endpoints ----
  void open(const connect_cmd& c);
  void start_session(connection& conn, auth_direction direction);

  // Sends one frame as an active message.
  void post(connection& conn, frame_bytes frame);

  // Sends one of this side's frames (not the session's own): over the data endpoint, the
  // token as the message's header, once there is one.
  void post_own(connection& conn, frame_bytes frame);

  // Sends a tensor: its header frame as the message's header, its bytes from the caller's
  // buffer (kept alive by the command's owner) -- over the data endpoint, with the peer's
  // token in front of the header, when there is one.
  void post_tensor(connection& conn, tensor_cmd t);

  // Once up: where the peer should send this side its tensors (ucx_transport.h), under the
  // token both sides derive from the handshake (auth.h).
  void offer_data_endpoint(connection& conn);

  // The peer's DataEndpoint: open the data endpoint when the peer shares this host, then send
  // the tensors that waited for it. An error closes the connection.
  std::optional<error> use_data_endpoint(connection& conn, decoded_frame& frame);

  // A send UCX has not finished: what its callback needs.
  struct send_state {
    impl* self = nullptr;
    peer_id peer = 0;
    bool direct = false;   // on the data endpoint (counted in direct_sends_in_flight)
    data_worker* data = nullptr;   // the data endpoint's worker, whose `sends` count it
    outgoing out;
  };

  // Whether the message went out, is on its way or waits in the connection (a data
  // endpoint's past data_sends_posted_max); a failure kills the connection.
  bool send_am(connection& conn, ucp_ep_h ep, unsigned am_id, outgoing out);
  // Hands the message to UCX. `counted`: it waited in direct_waiting, and sends_in_flight
  // counts it already.
  bool post_am(connection& conn, ucp_ep_h ep, unsigned am_id, outgoing out, bool counted);
  // Posts the waiting sends of the connections on refill_, up to data_sends_posted_max each.
  void post_waiting_sends();

  // ---- ucx_data_workers.cpp: the data endpoints' workers ----
  // A new data worker for clients' connections or nodes'; the newest of its kind is given
  // new connections until it is full. Errors: unavailable (UCX; no usable address).
  status add_data_worker(bool clients);
  // The data worker for a connection (a client's or not) that may get a data endpoint now:
  // the newest of its kind, or a new one when that is full; null when none can be had
  // (warned) or data endpoints are off, and while data_endpoints_max are held (warned once).
  data_worker* data_worker_for_connection(bool client);
  // The connection takes a place in `d`; take_back_data_worker() returns it (a peer on
  // another host, which opens no data endpoint).
  void give_data_worker(connection& conn, data_worker& d);
  void take_back_data_worker(connection& conn);
  // A send on `d`'s endpoint to connection `peer` finished (in its callback).
  void send_finished(data_worker& d, peer_id peer);
  // The data worker `worker` is; null for the connections' worker.
  data_worker* data_worker_of(ucp_worker_h worker);
  // Progresses every data worker; whether any had something to do.
  bool progress_data_workers();
  // Arms every data worker's event fd; false when one has events already.
  bool arm_data_workers();
  // Destroys the data workers that were given connections and have none left, nor any
  // send, fetch or endpoint close -- or only sends to peers that have ended (`stuck`).
  void retire_data_workers();
  // The fds the sleeping progress thread waits on: the wake fd, the connections' worker's,
  // every data worker's.
  std::vector<pollfd>& poll_fds();

  // ---- ucx_receive.cpp: active messages in, the inbox, fetches, session actions ----
  static ucs_status_t on_am(void* arg, const void*, size_t, void* data, size_t length,
                            const ucp_am_recv_param_t* param);
  static ucs_status_t on_tensor_am(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                   const ucp_am_recv_param_t* param);

  // A tensor over a data endpoint: the token names the connection; an unknown one (a
  // connection gone, or never ours) drops it. `arg`: the data_worker it came to.
  static ucs_status_t on_direct_tensor_am(void* arg, const void* header, size_t header_length, void* data,
                                          size_t length, const ucp_am_recv_param_t* param);

  // A frame over a data endpoint: the token alone is the header.
  static ucs_status_t on_direct_frame_am(void* arg, const void* header, size_t header_length, void* data,
                                         size_t length, const ucp_am_recv_param_t* param);

  // The connection a data endpoint's token names, if it came to the worker that connection
  // offered; 0 (counted as dropped) for none.
  peer_id peer_of_token(const void* header, const data_worker& d);

  // One active message on `worker`: a frame (no header) or a tensor (its header frame +
  // payload), from the endpoint param names or, over a data endpoint, from `peer`. A
  // tensor's header is never empty (a frame's header is at least frame_header_bytes).
  ucs_status_t arrive(ucp_worker_h worker, const void* header, size_t header_length, void* data, size_t length,
                      const ucp_am_recv_param_t* param, std::uint64_t length_max, peer_id peer = 0);

  // `now`: the progress loop's clock (run()), which is when this turn's arrivals count as heard.
  // Works through the connections on attention_ only.
  void handle_arrivals(clock_time now);

  // Puts the connection on attention_ (its inbox has frames, or it was lost), once.
  void attend(connection& conn);

  // Starts receiving item's rendezvous data into a buffer of its announced size; `ready`
  // once it is there. A buffer that cannot be had closes the connection (OVERLOADED).
  void fetch(connection& conn, const std::shared_ptr<inbound>& shared);

  // `tensor_data`: the payload when the frame was a tensor's header.
  void apply(connection& conn, peer_session::actions a, tensor_buffer* tensor_data = nullptr);
  void tick(clock_time now);

  // ---- ucx_connections.cpp: accepting, endpoint errors, closing, reaping, stopping ----
  // Connections accepted here that have not proved the secret yet are at most
  // handshakes_max: a new one closes the oldest (silent peers cannot hold the listener's
  // connections_max against workers and clients that would prove it).
  void make_room_for_a_handshake();
  static void on_conn_request(ucp_conn_request_h request, void* arg);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);

  // Marks a connection closed; reap() closes its endpoint and reports it (with the reason
  // this side closed it for, when it did).
  void kill(connection& conn, error why);

  // Puts the connection on ending_ (dead or closing), once.
  void end(connection& conn);

  // This side closes the connection: reap() closes it once the sends it has made (its
  // goodbye last) have finished, so a rendezvous frame is fetched before the disconnect.
  void begin_close(connection& conn, error why);
  static bool open_for_sends(const connection& conn) { return !conn.dead && !conn.lost && !conn.closing_until; }
  // Closes and forgets the dead connections on ending_, and those closing whose sends have
  // finished or whose wait ran out.
  void reap(clock_time now);

  // A flushing close, never forced (reap); `awaited`: see pending_close.
  void close_endpoint(ucp_worker_h worker, ucp_ep_h ep, bool awaited);
  bool awaiting_closes() const;

  // Frees the requests of endpoint closes that have finished (a close against a dead peer
  // may never finish; it stays counted in closes_pending).
  void finish_closes();
  void shutdown();

  // The transport whose progress thread this is (null on every other thread).
  static thread_local const impl* progress_of;

  transport_config config_;
  cluster_secret secret_;
  node_identity self_;
  transport_handler& handler_;

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;        // connections, the listener
  ucp_listener_h listener_ = nullptr;
  int worker_fd_ = -1, wake_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<peer_id> next_peer_{0};

  std::mutex mu_;
  std::deque<command> commands_;
  std::atomic<bool> commands_waiting_{false};   // !commands_.empty(), readable without mu_
  bool sleeping_ = false;        // the progress thread sleeps or is about to (under mu_)
  std::deque<command> batch_;   // the commands run_commands took (progress thread only)
  bool delivered_ = false;       // this turn handed the handler a frame or tensor
  bool sent_here_ = false;       // this turn's callbacks sent a frame (send() on this thread)
  // Data-endpoint sends in flight on connections not yet forgotten (the sum of their
  // direct_sends_in_flight): while any, run() polls instead of sleeping, since the data
  // worker's event fd does not wake for send completions (init()). A forgotten connection's
  // unfinished sends (a dead peer's) no longer count. The connections' worker wakes for
  // its sends itself.
  std::size_t live_direct_sends_ = 0;
  // Data workers, oldest first (data_worker_for_connection() says which one a connection
  // gets). Destroyed ones leave (retire_data_workers()); none without data_endpoints.
  std::vector<std::unique_ptr<data_worker>> data_workers_;
  std::size_t data_endpoints_held_ = 0;   // in data workers not yet destroyed
  // A data worker may have become unused (a connection, request or close of one ended):
  // run() looks at them after the turn.
  bool retire_check_ = false;
  bool data_workers_stuck_ = false;   // one has `stuck` or lingers: tick() sets retire_check_ now and then
  clock_time next_stuck_check_{};
  local_process self_process_;        // offered in DataEndpoint
  bool data_endpoints_spent_ = false;   // data_endpoints_max reached (and said so)
  std::vector<pollfd> poll_fds_;
  bool poll_fds_stale_ = true;
  bool all_direct_ = false;      // every connection's frames take its data endpoint, both ways
  bool direct_changed_ = true;   // a connection came, went or switched: all_direct_ is recomputed
  // The counters behind stats(): the progress thread adds, any thread reads. Each is exact
  // on its own (no lock: a few per message), not a snapshot of all of them together.
  struct counters {
    progress_counter frames_sent, frames_received, bytes_sent, bytes_received, peers_up, peers_rejected,
        frames_dropped, data_endpoints, tensors_direct, frames_direct, tensors_waited, closes_pending, sleeps,
        stalls, data_workers, data_workers_destroyed, data_sends_waiting, sends_stuck;
  };
  counters stats_;

  // Progress thread only.
  clock_time last_tick_;   // tick()'s last run: a long gap since is a stall of this process
  clock_time last_stall_warning_{};   // stalls are logged at most every stall_warning_interval
  std::optional<clock_time> last_stall_;   // when tick() last found this process had stalled
  std::unordered_map<peer_id, connection> conns_;
  std::unordered_map<ucp_ep_h, peer_id> by_ep_;
  // own_token of each connection: the connection, and the data worker it offered (what
  // arrives with the token on another worker is dropped).
  std::unordered_map<std::uint64_t, std::pair<peer_id, data_worker*>> by_token_;
  std::string host_key_;   // data endpoints open only between peers with the same one
  std::vector<arrival> arrivals_;
  std::vector<arrival> arrivals_batch_;   // the arrivals handle_arrivals works through
  std::vector<peer_id> attention_, attention_batch_;   // connection.attended
  std::vector<peer_id> ending_, ending_batch_;         // connection.ending
  // An endpoint close not finished yet. Only those of connections this side closed while
  // the peer was there (its goodbye and last frames in flight) are awaited when the
  // transport stops; a dead peer's close may never finish and would hold the stop to its
  // limit (a client whose head had been killed took 4 s to go).
  struct pending_close {
    ucp_worker_h worker;
    void* request;
    bool awaited;
  };
  std::vector<pending_close> closing_;
  std::unique_ptr<send_state> spare_send_;   // kept from a send that completed at once
  std::vector<peer_id> refill_, refill_batch_;   // connection.refill_listed
};

}  // namespace dsrt::transport
