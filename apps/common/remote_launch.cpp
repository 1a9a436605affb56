#include "apps/common/remote_launch.h"

#include <sstream>

namespace dsrt::apps {

result<std::vector<std::string>> parse_hostfile(const std::string& text) {
  std::vector<std::string> hosts;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    const auto last = line.find_last_not_of(" \t\r");
    const std::string host = line.substr(first, last - first + 1);
    if (host.find_first_of(" \t") != std::string::npos)
      return make_error(error_code::invalid_argument, "host file line {}: '{}' is not one host name", number, host);
    if (hosts.size() == hostfile_hosts_max)
      return make_error(error_code::invalid_argument, "host file: more than {} hosts", hostfile_hosts_max);
    hosts.push_back(host);
  }
  if (hosts.empty()) return make_error(error_code::invalid_argument, "host file names no host");
  return hosts;
}

std::string shell_quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::vector<std::string> ssh_command(const std::vector<std::string>& ssh_argv, const std::string& host,
                                     const std::vector<std::string>& argv) {
  std::vector<std::string> cmd = ssh_argv;
  cmd.push_back(host);
  std::string remote = "exec";
  for (const auto& a : argv) remote += " " + shell_quote(a);
  cmd.push_back(remote);
  return cmd;
}

}  // namespace dsrt::apps
