// Activation statistics of calibration (NUMERICS.md §3): for every Linear, the per-input-channel
// abs-max of its input (the "act scale", [K] fp32) and the per-tensor abs-max of its input and its
// output (for static O3 scales). Saved as safetensors keyed by Hugging Face module name, exactly
// like the original tool's act-scale files; the per-tensor values and the provenance live in
// __metadata__ so the tensor list stays compatible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/model.h"

namespace sq {

struct LinearStats {
  std::vector<float> channel_absmax;  // [in]
  float input_absmax = 0.0f;
  float output_absmax = 0.0f;
};

struct CalibrationInfo {
  std::string text_file, separator, model;
  int64_t documents = 0, tokens = 0, seq_len = 0;
};

class ActStats {
 public:
  std::map<std::string, LinearStats>& linears() { return linears_; }
  const std::map<std::string, LinearStats>& linears() const { return linears_; }
  // Looks up one Linear; the error says the scales were made for another model.
  const LinearStats& get(const std::string& module, int64_t expected_in,
                         const std::string& source) const;
  bool has_output_stats() const { return has_output_stats_; }

  CalibrationInfo info;

  void save(const std::filesystem::path& path) const;
  // Loads act scales written by this tool or by the original SmoothQuant tooling (tensors only).
  static ActStats load(const std::filesystem::path& path);
  // Checks that every Linear of `model` has statistics of the right width.
  void validate_for(const Model& model, const std::string& source) const;

  void merge(const std::string& module, const float* x, int64_t m, int64_t k, const float* y,
             int64_t n);

 private:
  std::map<std::string, LinearStats> linears_;
  bool has_output_stats_ = true;
};

// A LinearObserver that folds every Linear input/output (lm_head included, as the original tool
// records it) into ActStats: streaming, O(K) memory per Linear, activations are never stored.
class StatsObserver : public LinearObserver {
 public:
  explicit StatsObserver(ActStats& stats) : stats_(stats) {}
  void observe(int layer, const Linear& lin, const float* x, const float* y, int64_t m) override;

 private:
  ActStats& stats_;
};

}  // namespace sq
