#include "actors/remote_runtime.h"

#include <charconv>

#include "actors/blocking_ask.h"
#include "actors/client_link.h"
#include "actors/cluster_node.h"
#include "actors/messages.h"
#include "actors/system_config.h"

namespace dsrt::actors {


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

status validate(const remote_options& o) {
  const auto bad = [](std::string_view field, auto value) {
    return error{error_code::invalid_argument, fmt::format("remote_options.{} = {} is out of range", field, value)};
  };
  if (o.connect_timeout_ms.count() < 0) return bad("connect_timeout_ms", o.connect_timeout_ms.count());
  if (o.reconnect_interval_ms.count() < 1) return bad("reconnect_interval_ms", o.reconnect_interval_ms.count());
  if (o.head_wait_ms.count() < 0) return bad("head_wait_ms", o.head_wait_ms.count());
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
  rt->link_ = spawn_client_link(*rt->system_, rt->transport_.get(), *address, options);
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
