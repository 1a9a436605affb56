// id_map (runtime/id_map.h) against std::unordered_map under random inserts and erases of
// sequential and scattered ids, and the promise its callers rely on: an object does not
// move while its entry lives, whatever the table does around it.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

#include "runtime/id_map.h"

namespace dsrt {
namespace {

struct payload {
  std::uint64_t id;
  int value;
};

TEST(IdMap, MatchesAnUnorderedMapUnderRandomInsertsAndErases) {
  std::mt19937_64 rng(11);
  id_map<payload> table;
  std::unordered_map<std::uint64_t, payload*> reference;   // the address each object had when inserted
  // Sequential ids (as requests are numbered) and scattered ones, erased in random order.
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 1; i <= 300; ++i) ids.push_back(i);
  for (int i = 0; i < 300; ++i) ids.push_back(rng());
  for (int step = 0; step < 50000; ++step) {
    const std::uint64_t id = ids[rng() % ids.size()];
    if (reference.count(id)) {
      ASSERT_EQ(table.find(id), reference[id]) << "step " << step << ": the object moved or was lost";
      if (rng() % 2) {
        ASSERT_TRUE(table.erase(id));
        reference.erase(id);
        ASSERT_FALSE(table.contains(id));
        ASSERT_FALSE(table.erase(id));
      }
    } else {
      ASSERT_EQ(table.find(id), nullptr);
      auto& p = table.insert(id, std::make_unique<payload>(payload{id, step}));
      reference[id] = &p;
    }
    ASSERT_EQ(table.size(), reference.size());
  }
  std::size_t visited = 0;
  table.for_each([&](std::uint64_t id, const payload& p) {
    ++visited;
    EXPECT_EQ(p.id, id);
    EXPECT_EQ(reference.at(id), &p);
  });
  EXPECT_EQ(visited, reference.size());
  table.clear();
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(table.find(ids[0]), nullptr);
}

TEST(IdMap, DestroysWhatItOwns) {
  auto alive = std::make_shared<int>(0);
  struct holder {
    std::shared_ptr<int> keep;
  };
  {
    id_map<holder> table;
    for (std::uint64_t id = 0; id < 100; ++id) table.insert(id, std::make_unique<holder>(holder{alive}));
    EXPECT_EQ(alive.use_count(), 101);
    for (std::uint64_t id = 0; id < 50; ++id) table.erase(id);
    EXPECT_EQ(alive.use_count(), 51);
  }
  EXPECT_EQ(alive.use_count(), 1);
}

}  // namespace
}  // namespace dsrt
