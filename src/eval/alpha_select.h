// --alpha auto, end to end. The per-group search (quant/alpha_search.h) minimizes each group's
// local output error, which does not always translate into the best model: on the shared models
// it sometimes lost to a single global α. So the per-group choice competes with the global α grid
// {0, 0.05, ..., 1} on the calibration documents — mean KL(P_fp ‖ P_q) over their tokens with the
// scheme applied — and the best candidate wins. By construction auto is never worse than the best
// global α on the calibration data.
#pragma once

#include <string>
#include <vector>

#include "quant/alpha_search.h"
#include "quant/fake_quant.h"

namespace sq {

struct AlphaSelection {
  std::vector<float> per_group;                            // α per smoothing group (layer-major)
  std::string winner;                                      // "per-group" or "global 0.3"
  double kl = 0;                                           // calibration KL of the winner
  std::vector<std::pair<std::string, double>> candidates;  // every candidate's calibration KL
};

AlphaSelection select_alpha(const Model& fp, const ActStats& stats, const CalibSet& calib,
                            const QuantConfig& quant, const std::vector<AlphaChoice>& per_group,
                            const std::string& stats_source, int64_t max_tokens = 16384);

}  // namespace sq
