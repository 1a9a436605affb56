// The list of BUGGIFY points (runtime/buggify.h) names exactly the points the sources
// evaluate: dssim --buggify-points refuses other names, so a point added to the code and
// not to the list could never be chosen alone, and a listed point removed from the code
// would be accepted and never fire.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "runtime/buggify.h"

namespace dsrt {
namespace {

TEST(Buggify, EveryPointInTheTreeIsListed) {
  const std::filesystem::path root = DSRT_SOURCE_DIR;
  const std::regex point(R"re(DSRT_BUGGIFY\("([^"]+)"\))re");
  std::set<std::string> in_sources;
  for (const char* dir : {"runtime", "actors", "transport", "kernels", "apps"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root / dir)) {
      const auto ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".cpp" && ext != ".h")) continue;
      std::ifstream in(entry.path());
      std::stringstream text;
      text << in.rdbuf();
      const std::string body = text.str();
      for (auto it = std::sregex_iterator(body.begin(), body.end(), point); it != std::sregex_iterator(); ++it)
        in_sources.insert((*it)[1]);
    }
  }
  const std::set<std::string> listed(buggify_points.begin(), buggify_points.end());
  EXPECT_FALSE(in_sources.empty()) << "no DSRT_BUGGIFY point found under " << root;
  EXPECT_EQ(listed, in_sources);
}

}  // namespace
}  // namespace dsrt
