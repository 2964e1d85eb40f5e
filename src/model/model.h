// The decoder forward pass in fp32 on the CPU for every supported architecture, driven by
// ModelConfig and the architecture descriptor. Linear is the one seam where precision varies: a
// LinearExecutor may replace the fp32 GEMM (fake-quant, real INT8), and a LinearObserver sees the
// input and output of every Linear (calibration, diagnosis). Invariant: with neither set, the
// logits equal Hugging Face transformers' fp32 logits to ~1e-5.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace sq {

class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  // x: [m, lin.in], y: [m, lin.out] (bias included), both row-major.
  virtual void observe(int layer, const Linear& lin, const float* x, const float* y, int64_t m) = 0;
};

// A Linear input the model already quantized per token: q[m, in] int8, scales[m]. The model
// produces it for executors that ask (fused into the norm before the Linear, and shared by every
// Linear that reads the same input: q/k/v, gate/up).
struct QuantizedInput {
  const int8_t* q = nullptr;
  const float* scales = nullptr;
};

class LinearExecutor {
 public:
  virtual ~LinearExecutor() = default;
  // Computes y[m, lin.out] from x[m, lin.in] (bias included). `qx`, when non-null, is x quantized
  // per token (only passed to executors whose takes_per_token_int8() is true).
  virtual void run(int layer, const Linear& lin, const float* x, float* y, int64_t m,
                   const QuantizedInput* qx) const = 0;
  virtual bool takes_per_token_int8() const { return false; }

  // True when the executor quantizes the k/v projection outputs (--quant-bmm in real INT8): the
  // KV cache then holds them as int8 and run_to_int8 produces them.
  virtual bool int8_kv() const { return false; }
  // q[m, lin.out] = the int8 output of `lin` on x, with one scale per row (equal rows for
  // per-tensor granularity), such that q·scale is exactly what run() returns.
  virtual void run_to_int8(int layer, const Linear& lin, const float* x, int64_t m, int8_t* q,
                           float* row_scales, const QuantizedInput* qx) const;
};

// Keys and values of every layer for positions 0 .. size()-1, [pos, n_kv_heads·head_dim] each.
// Storage is allocated by the first forward, in the precision its executor asks for: fp32 (keys
// after RoPE), or int8 with one scale per position (--quant-bmm in real INT8: keys BEFORE RoPE,
// exactly the quantized projection outputs, a quarter of the bytes). A cache keeps its precision
// until it is destroyed.
class KvCache {
 public:
  KvCache(const ModelConfig& cfg, int64_t capacity);
  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  void advance(int64_t n) { size_ += n; }

  void allocate(bool int8);  // no-op when already allocated in that precision
  bool int8() const { return int8_; }
  size_t bytes() const;

  float* k(int layer) { return k_[layer].data(); }
  float* v(int layer) { return v_[layer].data(); }
  int8_t* k8(int layer) { return k8_[layer].data(); }
  int8_t* v8(int layer) { return v8_[layer].data(); }
  float* k_scale(int layer) { return ks_[layer].data(); }
  float* v_scale(int layer) { return vs_[layer].data(); }

 private:
  int64_t capacity_ = 0, size_ = 0, n_layers_ = 0, row_ = 0;
  bool allocated_ = false, int8_ = false;
  std::vector<std::vector<float>> k_, v_, ks_, vs_;
  std::vector<std::vector<int8_t>> k8_, v8_;
};

struct ForwardOptions {
  LinearObserver* observer = nullptr;
  const LinearExecutor* executor = nullptr;  // null: fp32 OpenBLAS
  bool last_logits_only = false;             // generation needs only the last row
};

class Model {
 public:
  // Loads config.json and the safetensors weights of a Hugging Face model directory.
  static Model load(const std::filesystem::path& dir);
  Model(ModelConfig cfg, Checkpoint ckpt, ModelWeights w);

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return weights_; }
  ModelWeights& mutable_weights() { return weights_; }
  const Checkpoint& checkpoint() const { return ckpt_; }

  // Runs `tokens` at positions cache.size() ... and appends their keys/values to the cache.
  // logits: [tokens.size(), vocab] (or [1, vocab] with last_logits_only).
  void forward(std::span<const int32_t> tokens, KvCache& cache, std::vector<float>& logits,
               const ForwardOptions& opt = {}) const;

 private:
  void run_linear(int layer, const Linear& lin, const float* x, float* y, int64_t m,
                  const ForwardOptions& opt, const QuantizedInput* qx = nullptr) const;

  ModelConfig cfg_;
  Checkpoint ckpt_;
  ModelWeights weights_;
  std::vector<float> inv_freq_;
};

}  // namespace sq
