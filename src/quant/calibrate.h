// Calibration (NUMERICS.md §3): split a text into documents, tokenize each alone with the default
// special tokens, truncate to seq_len, and run each through the model (batch 1) with a
// StatsObserver. Memory stays flat in the number of documents: only ActStats grows, with the
// number of Linears.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/act_stats.h"
#include "tokenizer/tokenizer.h"

namespace sq {

struct CalibOptions {
  std::string separator;  // empty: "<|endoftext|>" when the text has it, else a blank line
  int64_t samples = 512;  // first N non-empty documents in file order
  int64_t seq_len = 512;
  bool shuffle = false;
  uint64_t seed = 42;
};

struct CalibSet {
  std::vector<std::vector<int32_t>> docs;
  std::string separator;  // the one actually used
  int64_t tokens = 0;
};

// Documents of `text`: split on the separator, whitespace-stripped (as Python's str.strip), empty
// ones dropped. Throws when a given separator never occurs.
std::vector<std::string> split_documents(const std::string& text, const std::string& separator,
                                         bool separator_given, std::string* used = nullptr);

CalibSet make_calib_set(const std::string& text, const Tokenizer& tok, const CalibOptions& opt,
                        const std::string& source);

// The longest document of `set`; throws when it exceeds the model's positions (--seq-len).
int64_t longest_document(const CalibSet& set, const ModelConfig& cfg);

// Runs the calibration documents through `model` and returns the statistics of every Linear.
// `fwd` lets a fake-quant executor run (static scales of a quantized model); its observer is set
// by this function.
ActStats calibrate(const Model& model, const CalibSet& set, ForwardOptions fwd = {});

}  // namespace sq
