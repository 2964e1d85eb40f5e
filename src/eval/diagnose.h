// smoothquant diagnose: where a quantized model loses accuracy. Per Linear, the relative output
// error ‖y_q − y_fp‖ / ‖y_fp‖ of the quantized model against FP on the same tokens (errors of
// earlier layers included, as a user experiences them), worst first; per smoothing group, the
// outlier ratio max/median of the channel abs-max before and after smoothing.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/fake_quant.h"

namespace sq {

struct LinearError {
  std::string name;
  int layer = 0;
  double rel_error = 0;
  double input_absmax_ratio = 0;  // max/median channel abs-max of this Linear's input (FP model)
};

struct GroupOutliers {
  std::string norm, consumer;
  double ratio_before = 0, ratio_after = 0;  // max / median of the channel abs-max
  float alpha = 0;
};

struct Diagnosis {
  std::vector<LinearError> linears;  // worst first
  std::vector<GroupOutliers> groups;
  int64_t tokens = 0;
};

// max / median (numpy median: mean of the two middle values) of v.
double outlier_ratio(std::vector<float> v);

Diagnosis diagnose(const Model& fp, const QuantModel& q, const ActStats& stats,
                   std::span<const int32_t> tokens);

}  // namespace sq
