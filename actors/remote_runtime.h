#pragma once
// A running cluster as an app sees it: connects to the head at dsrt://HOST:PORT with the
// cluster secret and gives dsrt::client (actors/client.h) what it needs, so the same app
// code serves requests in process or through a cluster.
//
//   auto secret = transport::read_secret_file("run/cluster.secret");
//   auto rt = actors::remote_runtime::connect("dsrt://127.0.0.1:7400", *secret, tokenizer);
//   dsrt::client c(**rt);
//
// Inside, a client-link actor (actors/client_link.h) plays the router for the request
// actors: it sends each request to the head as a frame and hands the chunks and the final
// back. It reconnects when the connection to the head is lost: at once if the connection
// had lasted reconnect_interval_ms, else every reconnect_interval_ms. Meanwhile new
// requests wait for it (head_wait_ms), and open requests without output so far are sent
// again on the next connection (resends_max); those with output end with UNAVAILABLE,
// cancelled ones with CANCELLED, those without output past their deadline with
// DEADLINE_EXCEEDED. Every request gets exactly one final.
//
// The link does not take the head's stream on trust: a chunk out of sequence, more tokens
// than the request's max_tokens, a final whose chunk count disagrees with the chunks that
// came, an unreadable frame or one a head never sends closes the connection and ends every
// open request at once, UNAVAILABLE unless cancelled or past its deadline as above (frames
// already queued behind it are not read; nothing is sent again, and the reconnect waits
// reconnect_interval_ms), so
// an app never sees a gap, a duplicate or anything after its final. A request whose
// deadline passed final_grace_ms ago without a final from the head ends here with
// DEADLINE_EXCEEDED (and a cancel goes to the head). A request the wire would alter or the
// head refuse as unreadable (priority outside 0..255, max_tokens below 1, bad sampling
// values, over the wire's limits) is refused here with INVALID_ARGUMENT and never sent.
//
// Ownership: owns its actor system and transport. Thread safety: any thread.
#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "actors/router_access.h"
#include "actors/transport_bridge.h"
#include "transport/ucx_transport.h"

namespace dsrt::actors {

struct remote_options {
  transport::transport_config transport;   // listen is forced off
  bridge_limits bridge;                     // what the head may have queued for the link
  milliseconds connect_timeout_ms{10000};  // connect() waits this long for the head
  milliseconds reconnect_interval_ms{500};
  // A request made while there is no connection to the head waits this long for one, then
  // ends with UNAVAILABLE (0: at once, and nothing is sent again: resends_max is moot).
  milliseconds head_wait_ms{2000};
  // Times one request without output may be sent again after its connection was lost
  // (not once cancelled, nor past its deadline).
  std::uint32_t resends_max = 1;
  std::size_t open_requests_max = 65536;   // open and waiting requests; more get OVERLOADED here
  std::uint32_t local_retry_after_ms = 1000;   // retry hint on finals this side makes (no head, full)
  milliseconds final_grace_ms{2000};       // after a request's deadline, waited for the head's final
  milliseconds expiry_check_ms{100};       // how often requests past deadline + grace are looked for
  std::int32_t scheduler_threads = 2;
};

struct remote_stats {
  bool connected = false;
  std::int64_t connects = 0;
  std::int64_t open_requests = 0;      // sent to the head, no final yet
  std::int64_t waiting_requests = 0;   // waiting for a connection to the head (head_wait_ms)
  std::int64_t resent = 0;             // requests sent again on a new connection
  std::optional<error> last_failure;   // why the latest connection ended or failed
  std::int64_t protocol_violations = 0;   // connections this side closed for the head's frames
  std::int64_t expired = 0;               // requests ended here past deadline + final_grace_ms
};

// invalid_argument naming the field (connect() checks it).
status validate(const remote_options& options);

// Parses "dsrt://HOST:PORT". Errors: invalid_argument naming what is wrong.
struct cluster_address {
  std::string host;
  std::uint16_t port = 0;
};
result<cluster_address> parse_cluster_url(const std::string& url);

class remote_runtime : public router_access {
 public:
  // Errors: invalid_argument (URL); unauthenticated (the head and this side do not share
  // the secret); unavailable (no head within connect_timeout_ms).
  static result<std::unique_ptr<remote_runtime>> connect(const std::string& url,
                                                         const transport::cluster_secret& secret,
                                                         std::shared_ptr<const tokenizer::tokenizer> tokenizer,
                                                         remote_options options = {});
  ~remote_runtime() override;

  caf::actor_system& system() override { return *system_; }
  const caf::actor& router() const override { return link_; }
  const std::shared_ptr<const tokenizer::tokenizer>& tokenizer() const override { return tokenizer_; }
  std::uint64_t next_request_id() override { return ++request_ids_; }

  result<remote_stats> stats();

 private:
  remote_runtime() = default;
  remote_options options_;
  std::shared_ptr<const tokenizer::tokenizer> tokenizer_;
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
  transport_bridge bridge_;
  std::unique_ptr<transport::ucx_transport> transport_;
  caf::actor link_;
  std::atomic<std::uint64_t> request_ids_{0};
};

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::remote_stats)
