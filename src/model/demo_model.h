// make-demo-model: a deterministic synthetic Llama-architecture checkpoint (config.json,
// model.safetensors, a byte-level tokenizer.json) with activation-outlier channels injected
// function-preservingly, the structure SmoothQuant exists for. The same options and seed give the
// same bytes on every machine (own PRNG, no std::normal_distribution). Weights are streamed to
// disk tensor by tensor, so a 1B-class shape needs one tensor of memory, not the model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sq {

struct DemoModelOptions {
  int64_t hidden = 256;
  int64_t layers = 4;
  int64_t heads = 8;
  int64_t kv_heads = 4;
  int64_t ffn = 688;
  int64_t vocab = 512;  // >= 259: 256 byte tokens, BOS, EOS, UNK
  int64_t max_positions = 2048;
  uint64_t seed = 1;
  DType dtype = DType::kF32;
  int64_t n_outliers = 4;  // channels per norm that get an outlier factor
  std::vector<float> outlier_factors = {30.0f, 50.0f, 70.0f, 90.0f};
};

// Writes the model to `dir` atomically (a temp sibling renamed at the end). Throws sq::Error for
// invalid sizes or when `dir` exists and is not empty.
void make_demo_model(const std::filesystem::path& dir, const DemoModelOptions& opt);

// The outlier channels the model carries (the same in every layer), for tests and docs.
std::vector<int64_t> demo_outlier_channels(const DemoModelOptions& opt);

}  // namespace sq
