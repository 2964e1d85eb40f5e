// config.json -> ModelConfig for the supported decoder-only architectures (llama, mistral, qwen2,
// opt). ModelConfig is plain data: every field the forward pass needs, already resolved (head_dim,
// GQA, rope theta from either transformers-4 or transformers-5 spelling, OPT position offset, ...).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/quant_format.h"

namespace sq {

enum class Arch { kLlama, kMistral, kQwen2, kOpt };
enum class NormKind { kRmsNorm, kLayerNorm };
enum class Activation { kSilu, kRelu, kGelu };
enum class PositionKind { kRope, kLearned };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string model_type;  // as in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  NormKind norm = NormKind::kRmsNorm;
  float norm_eps = 1e-6f;
  Activation act = Activation::kSilu;
  bool gated_mlp = true;  // SwiGLU (gate, up, down) vs fc1 -> act -> fc2
  PositionKind positions = PositionKind::kRope;
  double rope_theta = 10000.0;
  int64_t position_offset = 0;  // OPT learned positions: row = position + 2
  bool tie_embeddings = false;
  bool qkv_bias = false;   // Qwen2
  bool o_bias = false;     // OPT (enable_bias)
  bool mlp_bias = false;   // OPT
  bool pre_norm = true;    // OPT-350m is post-LN
  bool final_norm = true;  // OPT: absent for post-LN / _remove_final_layer_norm
  std::optional<int32_t> bos_id, eos_id;
  std::string torch_dtype;           // "float32", "float16", "bfloat16" (informational)
  std::optional<QuantFormat> quant;  // set for compressed-tensors INT8 checkpoints
};

std::string_view arch_name(Arch a);
// The architectures this build supports, for error messages and --help.
std::string supported_architectures();

// Parses config.json text; `where` names the file in errors.
ModelConfig parse_model_config(const std::string& json_text, const std::string& where);
// Reads DIR/config.json.
ModelConfig load_model_config(const std::filesystem::path& dir);

}  // namespace sq
