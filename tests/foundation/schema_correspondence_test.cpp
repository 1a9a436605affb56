// The in-process message types correspond one to one with the wire schemas: every struct in
// runtime/serving/messages.h, actors/messages.h and actors/cache.h names its Cap'n Proto definition ("serving.capnp ReplicaChunk"), every
// name resolves to a struct in that schema, and every struct of serving.capnp is named by
// some in-process type. A new message cannot land on one side only.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace dsrt {
namespace {

std::string read(const std::string& relative) {
  std::ifstream in(std::string(DSRT_SOURCE_DIR) + "/" + relative);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> schema_structs(const std::string& text) {
  std::set<std::string> names;
  const std::regex def(R"(^\s*struct\s+([A-Za-z0-9]+)\s*\{)", std::regex::multiline);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), def); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

TEST(SchemaCorrespondence, EveryInProcessMessageNamesAWireDefinitionAndBack) {
  // The in-process types live in the actors' protocol headers.
  const std::string messages =
      read("runtime/serving/messages.h") + read("actors/messages.h") + read("actors/cache.h");
  ASSERT_FALSE(messages.empty());
  std::map<std::string, std::set<std::string>> schemas;
  for (const char* file : {"request.capnp", "serving.capnp"}) schemas[file] = schema_structs(read(std::string("schemas/") + file));
  ASSERT_GT(schemas["serving.capnp"].size(), 5u);

  // Every native struct is preceded (within its comment block) by "<file>.capnp <Name>".
  const std::regex native(R"(^struct\s+([a-z_]+)\s*\{)", std::regex::multiline);
  int structs = 0;
  for (auto it = std::sregex_iterator(messages.begin(), messages.end(), native); it != std::sregex_iterator(); ++it) {
    ++structs;
    const std::size_t at = std::size_t(it->position());
    const std::string before = messages.substr(at > 400 ? at - 400 : 0, at > 400 ? 400 : at);
    EXPECT_NE(before.find(".capnp "), std::string::npos) << (*it)[1] << " names no wire schema";
  }
  EXPECT_GE(structs, 13);

  // Every "<file>.capnp Name" (and "/ Name" continuations) resolves.
  std::set<std::string> named;
  const std::regex ref(R"(([a-z]+\.capnp) ([A-Z][A-Za-z]+)(?: / ([A-Z][A-Za-z]+))?)");
  const std::regex also(R"(serving\.capnp ([A-Z][A-Za-z]+)(?:, its copies ([A-Z][A-Za-z]+))?)");
  for (auto it = std::sregex_iterator(messages.begin(), messages.end(), ref); it != std::sregex_iterator(); ++it) {
    const std::string file = (*it)[1];
    for (int g : {2, 3}) {
      if (!(*it)[g].matched) continue;
      const std::string name = (*it)[g];
      EXPECT_TRUE(schemas[file].count(name)) << file << " has no struct " << name;
      named.insert(name);
    }
  }
  for (auto it = std::sregex_iterator(messages.begin(), messages.end(), also); it != std::sregex_iterator(); ++it)
    if ((*it)[2].matched) named.insert((*it)[2]);
  for (const auto& name : schemas["serving.capnp"])
    EXPECT_TRUE(named.count(name)) << "serving.capnp " << name << " has no in-process type in actors/messages.h";
}

}  // namespace
}  // namespace dsrt
