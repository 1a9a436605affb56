#include "runtime/batching/block_tables.h"

#include <memory>

namespace dsrt::batching {

void block_tables::release(const step_plan& plan) {
  if (plan.tables_reset) {
    tables_.clear();
    scheduler_ = plan.scheduler;
  }
  if (plan.scheduler != scheduler_) return;
  for (std::uint64_t id : plan.released) tables_.erase(id);
}

status block_tables::apply(const step_plan& plan) {
  if (plan.sequences.empty() && plan.released.empty() && !plan.tables_reset) return ok_status();   // nothing to follow
  if (!plan.tables_reset && plan.scheduler != scheduler_)
    return make_error(error_code::internal, "step plan of scheduler {}; this shard follows scheduler {}",
                      plan.scheduler, scheduler_);
  release(plan);
  for (const auto& p : plan.sequences) {
    std::vector<std::int32_t>* table = tables_.find(p.id);
    if (p.table_kept == 0) {
      if (!table) table = &tables_.insert(p.id, std::make_unique<std::vector<std::int32_t>>());
      table->assign(p.new_blocks.begin(), p.new_blocks.end());
      continue;
    }
    const std::size_t held = table ? table->size() : 0;
    if (p.table_kept < 0 || std::size_t(p.table_kept) > held)
      return make_error(error_code::internal,
                        "step plan: sequence {} keeps {} blocks of a table of {} this shard holds", p.id,
                        p.table_kept, held);
    table->resize(std::size_t(p.table_kept));
    table->insert(table->end(), p.new_blocks.begin(), p.new_blocks.end());
  }
  return ok_status();
}

std::span<const std::int32_t> block_tables::table(std::uint64_t id) const {
  const std::vector<std::int32_t>* table = tables_.find(id);
  return table ? std::span<const std::int32_t>(*table) : std::span<const std::int32_t>();
}

}  // namespace dsrt::batching
