// smoothquant quantize: writes a compressed-tensors "int-quantized" checkpoint that vLLM serves
// (REFERENCE.md §3.1): per decoder Linear `weight` I8 [N, K], `weight_scale` [N, 1] (channel) or
// [1] (tensor) in the model dtype, `input_scale` [1] for static activations; smoothing folded into
// the norms; lm_head, embeddings and norms in the original dtype; the quantization_config block in
// config.json; provenance in the safetensors metadata.
// Streams tensor by tensor from the mmap (row-wise fp32 work, pages released after use), so peak
// memory is a few rows plus one Linear's scales, not the model. The arithmetic equals the in-memory
// path (W·s in fp32, then the quantizer of NUMERICS §1). O3 input scales of smoothed Linears are
// max_j(act[j] / s[j]): the exact per-tensor abs-max of the smoothed input, no second pass needed.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "quant/act_stats.h"
#include "quant/scheme.h"

namespace sq {

struct ExportOptions {
  Scheme scheme = Scheme::kChannelToken;
  std::optional<float> alpha;          // nullopt: no smoothing
  std::vector<float> per_group_alpha;  // overrides alpha (layer-major, descriptor group order)
  const ActStats* stats = nullptr;     // needed for smoothing and for o3
  std::map<std::string, std::string> provenance;
};

struct ExportSummary {
  int64_t linears = 0;
  int64_t fp_bytes = 0, out_bytes = 0;  // weights in, checkpoint out
};

ExportSummary export_int8_checkpoint(const std::filesystem::path& model_dir,
                                     const ExportOptions& opt,
                                     const std::filesystem::path& out_dir);

}  // namespace sq
