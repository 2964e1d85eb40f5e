// A whole decoder on an accelerator, behind a plain C++ interface so that callers need no CUDA
// headers (DESIGN.md §2: only the registry and CMake know whether CUDA is built). The caller
// describes the model with host pointers (DeviceModelSpec); the engine uploads what it needs and
// keeps its own KV cache. Scope today: pre-norm decoders with a final norm: RMSNorm, RoPE and a
// gated SiLU MLP (llama, mistral, qwen2), or LayerNorm, learned positions and a ReLU MLP (OPT,
// pre-LN). Linears in fp32 (the reference: calibration and FP baselines), bf16, or
// real INT8 with every activation granularity of NUMERICS §2 (per-tensor weights arrive expanded
// to per-channel scales, which is exact) and --quant-bmm; activations, norms, RoPE, attention and
// the residual stream in fp32, the lm_head in bf16 (fp32 in fp32 engines, or on request). fp32
// engines can record calibration statistics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sq {

struct DeviceLinearSpec {
  int64_t in = 0, out = 0;
  const float* weight = nullptr;    // [out, in] fp32 (bf16 engines)
  const int8_t* w_s8 = nullptr;     // [out, in] int8 (INT8 engines)
  const float* w_scales = nullptr;  // [out] per-channel scales (INT8 engines)
  const float* bias = nullptr;      // [out] or null
  float in_scale = 0.0f;            // static activation scale (DeviceActQuant::kPerTensorStatic)
  float out_scale = 0.0f;  // static output scale of q/k/v (--quant-bmm with static activations)
};

enum class DevicePrecision { kF32, kBf16, kInt8 };
enum class DeviceActQuant { kPerToken, kPerTensorDynamic, kPerTensorStatic };

struct DeviceLayerSpec {
  const float* attn_norm = nullptr;                                 // [hidden]
  const float* mlp_norm = nullptr;                                  // [hidden]
  const float *attn_norm_bias = nullptr, *mlp_norm_bias = nullptr;  // LayerNorm models, nullable
  DeviceLinearSpec q, k, v, o, gate, up, down;  // ungated MLPs: up = fc1, down = fc2, no gate
};

struct DeviceModelSpec {
  int64_t vocab = 0, hidden = 0, ffn = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t max_positions = 0;
  float eps = 1e-6f;
  double rope_theta = 10000.0;
  DevicePrecision precision = DevicePrecision::kBf16;
  DeviceActQuant act = DeviceActQuant::kPerToken;  // INT8 engines
  bool quant_bmm = false;    // INT8 engines: q/k/v outputs quantized (before RoPE)
  bool f32_lm_head = false;  // bf16/INT8 engines: lm_head in fp32 as the CPU engines run it
  bool random = false;       // speed runs: random weights made on the device, all pointers ignored
  // OPT-style models: LayerNorm (with bias) instead of RMSNorm, learned positions instead of
  // RoPE (row position + position_offset of embed_positions added to the token embedding), and
  // fc1 → ReLU → fc2 instead of the gated SiLU MLP.
  bool layer_norm = false, learned_positions = false, gated_mlp = true;
  int64_t position_offset = 0;
  const float* embed_positions = nullptr;  // [max_positions + position_offset, hidden]
  const float* final_norm_bias = nullptr;  // [hidden], LayerNorm models
  const float* embed = nullptr;            // [vocab, hidden]
  const float* final_norm = nullptr;       // [hidden]
  const float* lm_head = nullptr;          // [vocab, hidden]
  std::vector<DeviceLayerSpec> layer;
};

// Calibration statistics (NUMERICS §3) of an fp32 engine, per Linear input group: abs-max per
// input channel of the inputs that q/k/v, o, gate/up and down (and lm_head) read, and abs-max per
// output column of their outputs (q|k|v and gate|up concatenated as the engine computes them;
// ungated MLPs: gate_up_out is fc1's output alone).
struct DeviceLayerStats {
  std::vector<float> attn_in, qkv_out, o_in, o_out, mlp_in, gate_up_out, down_in, down_out;
};
struct DeviceStats {
  std::vector<DeviceLayerStats> layers;
  std::vector<float> lm_in, lm_out;
};

class DeviceEngine {
 public:
  virtual ~DeviceEngine() = default;
  // Empties the KV cache and sizes it for `capacity` positions.
  virtual void reset(int64_t capacity) = 0;
  virtual int64_t cache_size() const = 0;
  // Runs tokens[0, n) at positions cache_size()... and appends their keys and values. logits
  // (host): [n, vocab], or [1, vocab] with last_only. (Pointer and count: CUDA sources build as
  // C++17, without std::span.)
  virtual void forward(const int32_t* tokens, int64_t n, std::vector<float>& logits,
                       bool last_only) = 0;
  virtual int64_t linear_weight_bytes() const = 0;
  // fp32 engines: zero the statistics and record every later forward into them.
  virtual void start_stats() = 0;
  virtual DeviceStats read_stats() = 0;
  virtual std::string describe() const = 0;
};

// Throws sq::Error when this build has no CUDA backend or no GPU is visible.
std::unique_ptr<DeviceEngine> make_cuda_engine(const DeviceModelSpec& spec);

}  // namespace sq
