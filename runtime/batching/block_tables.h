#pragma once
// The shard's side of step plans' block tables: each planned sequence's KV block table,
// kept from plan to plan, so a plan carries only what changed (planned_sequence::table_kept
// and new_blocks; step_plan::released and tables_reset).
//
// Thread safety: none; the shard (its executor) is the only caller.
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/error.h"
#include "runtime/id_map.h"

namespace dsrt::batching {

class block_tables {
 public:
  // Drops the released tables (all of them first, on tables_reset), then applies each
  // entry's change. Errors: invalid_argument when an entry keeps more of a table than
  // this side holds (a plan from a scheduler this shard did not follow); the entries
  // before it are applied.
  status apply(const step_plan& plan);
  // The table of sequence `id` after the last apply(); empty when none is held.
  std::span<const std::int32_t> table(std::uint64_t id) const;
  std::size_t size() const { return tables_.size(); }

 private:
  id_map<std::vector<std::int32_t>> tables_;
};

}  // namespace dsrt::batching
