// The INT8 quantization formats a checkpoint can carry, and their compressed-tensors description
// (the `quantization_config` block of config.json that vLLM reads, REFERENCE.md §3.1):
// symmetric int8 weights per channel or per tensor; int8 activations per token (dynamic), per
// tensor (dynamic; evaluation only, vLLM cannot serve it) or per tensor static (`input_scale`).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sq {

enum class WeightGranularity { kPerTensor, kPerChannel };
enum class ActGranularity { kPerTokenDynamic, kPerTensorDynamic, kPerTensorStatic };

struct QuantFormat {
  WeightGranularity weight = WeightGranularity::kPerChannel;
  ActGranularity act = ActGranularity::kPerTokenDynamic;
  std::vector<std::string> ignore = {"lm_head"};  // module names left in floating point
};

// Parses the compressed-tensors `quantization_config` JSON text; `where` names the file in
// errors. Anything but symmetric 8-bit int weights/activations in a supported strategy is an error
// that says what is supported.
QuantFormat parse_compressed_tensors(const std::string& quantization_config_json,
                                     const std::string& where);
// The `quantization_config` JSON text for a format. Throws for per-tensor dynamic activations,
// which compressed-tensors/vLLM cannot express as servable.
std::string make_compressed_tensors(const QuantFormat& f);

}  // namespace sq
