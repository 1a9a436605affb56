#include "apps/dsbench/transport_neighbours.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace dsrt::apps {

using steady = std::chrono::steady_clock;

status wait_until_ready(node_process& peer, const std::filesystem::path& log, std::chrono::seconds wait) {
  const auto give_up = steady::now() + wait;
  for (;;) {
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);)
      if (line == "ready") return ok_t{};
    if (!peer.running())
      return make_error(error_code::unavailable, "the peer process ended before it listened (its log: {})",
                        log.string());
    if (steady::now() > give_up)
      return make_error(error_code::unavailable, "the peer process did not listen within {} s (its log: {})",
                        wait.count(), log.string());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

result<std::vector<double>> perftest(const std::vector<std::string>& args, int port, const std::filesystem::path& dir) {
  node_process server("ucx_perftest server", {"ucx_perftest", "-p", std::to_string(port)},
                      (dir / "perftest-server.log").string());
  DSRT_TRY(server.start());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string cmd = "ucx_perftest 127.0.0.1 -p " + std::to_string(port);
  for (const auto& a : args) cmd += " " + a;
  cmd += " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return make_error(error_code::internal, "cannot run ucx_perftest");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  ::pclose(p);
  server.stop(2000);
  const auto at = out.rfind("Final:");
  if (at == std::string::npos) return make_error(error_code::unavailable, "ucx_perftest gave no result:\n{}", out);
  std::istringstream line(out.substr(at + 6, out.find('\n', at) - at - 6));
  std::vector<double> fields;
  for (double x; line >> x;) fields.push_back(x);
  if (fields.size() < 6) return make_error(error_code::unavailable, "unreadable ucx_perftest line in:\n{}", out);
  return fields;
}

status idle_peers::connect(const transport::cluster_secret& secret, int port, int count, std::chrono::seconds wait) {
  transport::transport_config tc;
  tc.listen = false;
  auto t = transport::ucx_transport::start(tc, secret, {transport::node_role::client, -1, 3}, *this);
  if (!t) return t.err();
  transport_ = std::move(*t);
  // In batches the peer's handshakes_max (64) holds: it closes the oldest unproven beyond.
  constexpr int batch = 32;
  for (int done = 0; done < count;) {
    const int n = std::min(batch, count - done);
    for (int i = 0; i < n; ++i) (void)transport_->connect("127.0.0.1", std::uint16_t(port));
    done += n;
    const auto give_up = steady::now() + wait;
    while (transport_->stats().peers_up < std::uint64_t(done)) {
      if (steady::now() > give_up)
        return make_error(error_code::unavailable, "only {} of {} idle peers came up within {} s",
                          transport_->stats().peers_up, done, wait.count());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return ok_t{};
}

}  // namespace dsrt::apps
