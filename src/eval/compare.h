// Agreement of a quantized model with its FP reference (NUMERICS.md §5): mean KL(P_fp ‖ P_q) over
// positions with softmax in float64, and top-1 agreement (argmax equal). Both models see the same
// windows; the FP logits are recomputed per window so memory stays one window of logits.
#pragma once

#include <cstdint>
#include <span>

#include "eval/perplexity.h"
#include "model/model.h"

namespace sq {

class DistComparison {
 public:
  // Adds `rows` positions of [rows, vocab] logits.
  void add(const float* ref, const float* q, int64_t rows, int64_t vocab);
  double kl_mean() const { return n_ ? kl_sum_ / static_cast<double>(n_) : 0.0; }
  double kl_max() const { return kl_max_; }
  double top1() const { return n_ ? static_cast<double>(agree_) / static_cast<double>(n_) : 1.0; }
  int64_t positions() const { return n_; }

 private:
  double kl_sum_ = 0, kl_max_ = 0;
  int64_t n_ = 0, agree_ = 0;
};

// KL(P ‖ Q) of one position's logits, float64 softmax.
double kl_divergence(const float* p_logits, const float* q_logits, int64_t vocab);

struct QuantEvalResult {
  PerplexityResult quant, fp;
  double kl_mean = 0, kl_max = 0, top1 = 1;
};

// Perplexity of the quantized model (`q_fwd` carries its executor) with KL and top-1 against the
// FP model, window by window.
QuantEvalResult evaluate_against_fp(const Model& fp, const Model& q, const ForwardOptions& q_fwd,
                                    std::span<const int32_t> ids, const PerplexityOptions& opt);
// The same with both models on a device (--device cuda): `fp` is the reference engine (fp32
// Linears), `q` the quantized one. on_window sees the quantized logits.
QuantEvalResult evaluate_against_fp(DeviceEngine& fp, DeviceEngine& q, const ModelConfig& cfg,
                                    std::span<const int32_t> ids, const PerplexityOptions& opt,
                                    const WindowFn& on_window = {});

}  // namespace sq
