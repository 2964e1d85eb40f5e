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

class LinearExecutor {
 public:
  virtual ~LinearExecutor() = default;
  // Computes y[m, lin.out] from x[m, lin.in] (bias included).
  virtual void run(int layer, const Linear& lin, const float* x, float* y, int64_t m) const = 0;
};

// Keys and values of every layer for positions 0 .. size()-1, [pos, n_kv_heads·head_dim] each.
class KvCache {
 public:
  KvCache(const ModelConfig& cfg, int64_t capacity);
  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  float* k(int layer) { return k_[layer].data(); }
  float* v(int layer) { return v_[layer].data(); }
  void advance(int64_t n) { size_ += n; }

 private:
  int64_t capacity_ = 0, size_ = 0;
  std::vector<std::vector<float>> k_, v_;
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
                  const ForwardOptions& opt) const;

  ModelConfig cfg_;
  Checkpoint ckpt_;
  ModelWeights weights_;
  std::vector<float> inv_freq_;
};

}  // namespace sq
