// dsrun --hostfile's pieces: the host file and the remote command line.
#include <gtest/gtest.h>

#include "apps/common/remote_launch.h"

namespace dsrt::apps {
namespace {

using strings = std::vector<std::string>;

TEST(RemoteLaunch, HostFilesSkipCommentsAndBlankLines) {
  EXPECT_EQ(parse_hostfile("# cluster\nnode1\n\n  node2  # spare\r\n10.0.0.3\n").value(),
            (strings{"node1", "node2", "10.0.0.3"}));
}

TEST(RemoteLaunch, BadHostFilesNameTheLine) {
  auto two = parse_hostfile("a\nb c\n");
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.err().message.find("line 2"), std::string::npos) << two.err().message;
  EXPECT_FALSE(parse_hostfile("").ok());
  EXPECT_FALSE(parse_hostfile("# only a comment\n\n").ok());
  std::string many;
  for (std::size_t i = 0; i <= hostfile_hosts_max; ++i) many += "h\n";
  EXPECT_FALSE(parse_hostfile(many).ok());
}

TEST(RemoteLaunch, RemoteCommandsQuoteEveryArgument) {
  EXPECT_EQ(shell_quote("plain"), "'plain'");
  EXPECT_EQ(shell_quote("it's $HOME; rm -rf /"), "'it'\\''s $HOME; rm -rf /'");
  EXPECT_EQ(ssh_command({"ssh", "-tt"}, "node1", {"/opt/dsnode", "head", "--model", "/m dir"}),
            (strings{"ssh", "-tt", "node1", "exec '/opt/dsnode' 'head' '--model' '/m dir'"}));
}

}  // namespace
}  // namespace dsrt::apps
