// Fake quantization: simulate a W8A8 scheme in fp32 at the Linear seam. Weights are replaced once
// by q·scale (per-tensor or per-channel); FakeQuantExecutor quantizes each Linear input with the
// scheme's activation granularity on every call (dynamic per token / per tensor, or static from
// calibration) and, with --quant-bmm, the q/k/v outputs before RoPE. Real INT8 must agree with
// this path to fp32 rounding, because the integer products are exact.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/scheme.h"
#include "quant/smooth.h"

namespace sq {

class FakeQuantExecutor : public LinearExecutor {
 public:
  // `static_stats` (per-tensor input/output abs-max per Linear) is required for o3.
  FakeQuantExecutor(QuantConfig cfg, const ActStats* static_stats);
  void run(int layer, const Linear& lin, const float* x, float* y, int64_t m,
           const QuantizedInput* qx) const override;

 private:
  QuantConfig cfg_;
  SchemeSpec spec_;
  std::map<std::string, std::pair<float, float>> static_scales_;  // name -> (input, output) scale
};

// Replaces every decoder Linear's weight by its fake-quantized value (lm_head excluded).
void fake_quantize_weights(ModelWeights& w, WeightGranularity g);

struct CalibSet;

// How to build a quantized variant of a model.
struct QuantSetup {
  QuantConfig quant;
  std::optional<float> alpha;          // smoothing α; nullopt: no smoothing
  std::vector<float> per_group_alpha;  // --alpha auto: α per smoothing group (overrides alpha)
  bool keep_fp_weights = false;        // INT8 mode: keep the smoothed fp32 weights (GPU upload)
  // o3's pass over the smoothed model; empty: calibrate() on the CPU (a GPU run plugs in its own).
  std::function<ActStats(const Model&, const CalibSet&)> calibrator;
};

// A quantized variant: its own weights (copy-on-write of the FP model's), the executor, and
// the smoothing factors it used.
struct QuantModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<LinearExecutor> executor;  // FakeQuantExecutor or Int8Executor
  std::vector<SmoothRecord> smoothing;
  ForwardOptions forward_options() const { return {.executor = executor.get()}; }
};

// Builds the variant: smooth (if asked) with `act_stats`, then for o3 calibrate static scales on
// the smoothed FP model with `calib`, then fake-quantize the weights (mode fake) or quantize and
// pack them for the int8 kernels (mode int8; the fp32 copies are released).
QuantModel build_quant_model(const Model& fp, const QuantSetup& setup, const ActStats* act_stats,
                             const CalibSet* calib, const std::string& stats_source);

}  // namespace sq
