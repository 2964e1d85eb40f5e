// Perplexity by the protocol of NUMERICS.md §5: the token stream is cut into non-overlapping
// windows of ctx tokens (tail dropped), each window runs alone from position 0, and its loss is
// the summed cross-entropy of its ctx-1 shifted predictions, computed in float64 from fp32 logits.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/device_engine.h"
#include "model/model.h"

namespace sq {

struct PerplexityOptions {
  int64_t ctx = 256;
  int64_t max_windows = 0;  // 0: every full window
};

struct PerplexityResult {
  double ppl = 0, nll_sum = 0;
  int64_t n_predicted = 0, n_windows = 0, ctx = 0;
  std::vector<double> window_nll;
  double seconds = 0;
};

// Called after each window with its logits [ctx, vocab].
using WindowFn = std::function<void(int64_t window, std::span<const int32_t> ids,
                                    const std::vector<float>& logits)>;

// Number of windows the protocol yields for n_tokens.
int64_t count_windows(int64_t n_tokens, const PerplexityOptions& opt);

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids,
                            const PerplexityOptions& opt, const ForwardOptions& fwd = {},
                            const WindowFn& on_window = {});
// The same protocol on a device engine (--device cuda).
PerplexityResult perplexity(DeviceEngine& engine, const ModelConfig& cfg,
                            std::span<const int32_t> ids, const PerplexityOptions& opt,
                            const WindowFn& on_window = {});

// Σ_t −log softmax(logits[t])[ids[t+1]] over t < n-1, in float64.
double window_nll(const float* logits, std::span<const int32_t> ids, int64_t vocab);

}  // namespace sq
