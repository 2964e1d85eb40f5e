// SmoothQuant smoothing (NUMERICS.md §4). For each smoothing group of the architecture descriptor
// (a norm and the Linears reading it):
//   a[j] = act abs-max of input channel j (the group's first Linear), w[j] = max(max |W[o, j]|
//   over the group's Linears, 1e-5), s[j] = max(a[j]^α / w[j]^(1-α), 1e-5);
//   norm.weight /= s (and norm.bias), W[:, j] *= s for every Linear of the group.
// Computed in fp32 on the in-memory weights; the FP function is preserved up to rounding.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/act_stats.h"

namespace sq {

// One group of one layer, with pointers into ModelWeights.
struct GroupRef {
  int layer = 0;
  int group = 0;  // index into ArchDescriptor::smooth_groups
  Norm* norm = nullptr;
  std::vector<Linear*> linears;
};

// The one enumeration of smoothing groups (from the descriptor).
std::vector<GroupRef> smoothing_groups(ModelWeights& w, const ModelConfig& cfg);

// s[j] for a group (see the header comment). `act` has one entry per input channel.
std::vector<float> smoothing_factors(const std::vector<float>& act,
                                     const std::vector<const Linear*>& linears, float alpha);

// Divides the norm by s and multiplies the group's Linear columns by s, in place.
void apply_smoothing(GroupRef& g, const std::vector<float>& s);

struct SmoothRecord {
  std::string norm;  // HF module name of the norm
  float alpha = 0;
  std::vector<float> s;
};

// Smooths every group; alpha_for(layer, group) gives α (a constant for --alpha, per layer for
// auto). Returns the factors per norm, in forward order.
std::vector<SmoothRecord> smooth_model(ModelWeights& w, const ModelConfig& cfg,
                                       const ActStats& stats,
                                       const std::function<float(int, int)>& alpha_for,
                                       const std::string& stats_source);

// Writes a Hugging Face checkpoint: the original's tensors, with the smoothed norms and Linears of
// `w` rounded once to the original dtype, plus config and tokenizer files. Atomic.
void write_smoothed_checkpoint(const Model& original, const ModelWeights& w,
                               const std::filesystem::path& out_dir,
                               const std::map<std::string, std::string>& metadata);

void check_alpha(float alpha, const std::string& flag);

}  // namespace sq
