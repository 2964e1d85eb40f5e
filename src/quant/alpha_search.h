// --alpha auto: per smoothing group, choose α on a grid (0 to 1, step 0.05) minimizing that
// group's quantized-output error against FP on calibration activations (Intel Neural
// Compressor's per-layer auto-tuning, with the scheme's own quantizers):
//   err(α) = Σ_linears ‖Q_a(X/s)·Q_w(W·s)ᵀ − X·Wᵀ‖² / ‖X·Wᵀ‖²,  s = s(α) of NUMERICS.md §4.
// The group inputs are captured from an FP pass over the calibration set, at most max_tokens rows
// per group (evenly spaced), so memory is bounded by max_tokens × hidden per group.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/calibrate.h"
#include "quant/scheme.h"

namespace sq {

struct AlphaChoice {
  int layer = 0, group = 0;
  std::string norm;
  float alpha = 0;
  double error = 0;          // at the chosen α
  double error_default = 0;  // at the fallback α the search started from
};

struct AlphaSearchOptions {
  float step = 0.05f;
  int64_t max_tokens = 1024;
  float fallback_alpha = 0.5f;  // reported for comparison
};

// Returns one choice per smoothing group, in smoothing_groups() order (layer-major).
std::vector<AlphaChoice> search_alpha(const Model& fp, const ActStats& stats, const CalibSet& calib,
                                      Scheme scheme, const AlphaSearchOptions& opt,
                                      const std::string& stats_source);

}  // namespace sq
