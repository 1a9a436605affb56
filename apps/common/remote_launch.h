#pragma once
// Starting nodes on other machines over ssh (dsrun --hostfile): the host file, and the
// remote command line ssh hands to the remote shell.
#include <string>
#include <vector>

#include "runtime/error.h"

namespace dsrt::apps {

inline constexpr std::size_t hostfile_hosts_max = 4096;

// One host per line (node 0 = the first: the head); blank lines and '#' comments are
// skipped; a line is a host name or address and nothing else. Errors: invalid_argument
// naming the line (spaces inside a host, more than hostfile_hosts_max hosts, none at all).
result<std::vector<std::string>> parse_hostfile(const std::string& text);

// `arg` quoted for a POSIX shell: 'like this', with ' written as '\''.
std::string shell_quote(const std::string& arg);

// ssh_argv + host + one command string that execs `argv` on the remote side.
std::vector<std::string> ssh_command(const std::vector<std::string>& ssh_argv, const std::string& host,
                                     const std::vector<std::string>& argv);

}  // namespace dsrt::apps
