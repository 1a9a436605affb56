#pragma once
// The host-side metadata of the attention and cache-write kernels, built from the backend
// interface's attention_sequence lists. Plain C++ (no CUDA), so it is tested on any machine
// (tests/kernels/attention_metadata_test.cpp).
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace dsrt::kernels::cuda {

// One query row: its row in q and out, how many cache positions it attends to (its position
// + 1) and where its sequence's block table starts in the staged tables.
struct attention_row {
  std::int32_t q_row = 0;
  std::int32_t context = 0;
  std::int32_t table_offset = 0;
};

// The smallest power of two >= context (1 for context <= 1).
int attention_context_bucket(std::int64_t context);

// Every query row of seqs, and their block tables in rows of one stride: the power of two at
// or above the longest table the rows need (unused entries 0). Returns the bucketed context
// bound (attention_context_bucket of the longest context). With both bucketed, a decode
// step's staged sizes and launch parameters stay the same while its sequences grow, so the
// step replays as a CUDA graph (step_graphs.h).
// REQUIRES (asserted): each table covers its rows' positions; positions below 2^30.
int build_attention_rows(int block_tokens, std::span<const attention_sequence> seqs,
                         std::vector<attention_row>& rows, std::vector<std::int32_t>& tables);

// The row of each new token and its cache slot (block * block_tokens + offset).
// REQUIRES (asserted): each table covers its rows' positions.
void build_cache_slots(int block_tokens, std::span<const attention_sequence> seqs,
                       std::vector<std::int32_t>& rows, std::vector<std::int64_t>& slots);

}  // namespace dsrt::kernels::cuda
