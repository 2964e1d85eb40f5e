// Real INT8 Linears on the CPU: weights quantized (or loaded as int8) and packed once for the
// machine's best kernel; on every call the input is quantized to int8 with the scheme's
// granularity (per token, per tensor, or a static scale) and one int8 GEMM with a fused
// dequantizing epilogue produces y = acc · s_x · s_w + bias. The integer products are exact, so the
// result equals the fake-quant simulation of the same scheme up to fp32 rounding.
// --quant-bmm quantizes the q/k/v outputs exactly as the fake path does; k and v go to an int8 KV
// cache (one scale per position). The attention products then run in fp32 on the dequantized
// values, which equals int8 Q·Kᵀ / P·V with float scales up to rounding, and keeps RoPE (applied
// after quantization, NUMERICS §2) exact.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/gemm_s8.h"
#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/scheme.h"

namespace sq {

class Int8Executor : public LinearExecutor {
 public:
  // Quantizes the fp32 weights of `w` (already smoothed) per `weight` granularity, or takes the
  // int8 weights of Linears loaded from an INT8 checkpoint. Static scales come from
  // `static_stats` or from the checkpoint's input_scale.
  Int8Executor(const ModelWeights& w, WeightGranularity weight, ActGranularity act, bool quant_bmm,
               const ActStats* static_stats);
  void run(int layer, const Linear& lin, const float* x, float* y, int64_t m,
           const QuantizedInput* qx) const override;
  bool takes_per_token_int8() const override { return act_ == ActGranularity::kPerTokenDynamic; }
  bool int8_kv() const override { return quant_bmm_; }
  void run_to_int8(int layer, const Linear& lin, const float* x, int64_t m, int8_t* q,
                   float* row_scales, const QuantizedInput* qx) const override;

  size_t weight_bytes() const;  // packed int8 weights + scales
  ActGranularity act() const { return act_; }

  // One Linear as this executor runs it, for device engines: row-major int8 weights (the same
  // quantizer, so the same integers as the packed ones), scales expanded per output channel
  // (exact for per-tensor weights), and the static input/output scales (0 when dynamic).
  struct Exported {
    std::vector<int8_t> w;
    std::vector<float> scales;
    float in_scale = 0, out_scale = 0;
  };
  Exported export_linear(const Linear& lin) const;
  cpu::Isa isa() const { return isa_; }

 private:
  struct Entry {
    cpu::PackedS8 packed;
    std::vector<float> w_scales;
    bool per_channel = false;
    float in_scale = 0, out_scale = 0;  // static scales (O3)
  };
  const Entry& entry(const Linear& lin) const;
  void gemm(const Entry& e, const Linear& lin, const float* x, const QuantizedInput* qx, float* y,
            int64_t m) const;
  // Quantizes a q/k/v output y[m, lin.out] with the activation granularity (--quant-bmm).
  void quantize_output(const Entry& e, const Linear& lin, const float* y, int64_t m, int8_t* q,
                       float* row_scales) const;

  std::map<std::string, Entry> entries_;
  ActGranularity act_;
  bool quant_bmm_;
  cpu::Isa isa_;
};

// A model directory ready to run: FP checkpoints as they are; INT8 (compressed-tensors)
// checkpoints with an Int8Executor over their int8 weights (scheme from quantization_config).
struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Int8Executor> executor;  // null for FP checkpoints
  bool int8() const { return executor != nullptr; }
  ForwardOptions forward_options() const { return {.executor = executor.get()}; }
};
LoadedModel load_model(const std::filesystem::path& dir);

}  // namespace sq
