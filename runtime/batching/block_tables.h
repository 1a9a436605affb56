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
  // Drops the released tables (all of them first, on tables_reset, which also makes the
  // plan's scheduler the one followed), then applies each entry's change. Errors
  // (internal: the batcher's and the shard's views parted, not the request's fault, so
  // the router retries it elsewhere): a plan of another scheduler than the one followed
  // (a replica's old batcher, say), applied not at all; an entry that keeps more of a
  // table than this side holds, the entries before it applied.
  status apply(const step_plan& plan);
  // The shard does not run `plan` (an injected failure): its releases (and reset) still
  // apply, or the tables of finished sequences would stay.
  void release(const step_plan& plan);
  // The table of sequence `id` after the last apply(); empty when none is held.
  std::span<const std::int32_t> table(std::uint64_t id) const;
  std::size_t size() const { return tables_.size(); }

 private:
  id_map<std::vector<std::int32_t>> tables_;
  std::uint64_t scheduler_ = 0;   // whose plans these tables follow
};

}  // namespace dsrt::batching
