// Model weights in fp32, loaded from a Hugging Face checkpoint through the architecture
// descriptor. F32 tensors stay zero-copy views into the mmap when aligned; F16/BF16 are upcast
// exactly into owned buffers. Every tensor is checked against ModelConfig (presence, shape, dtype)
// at load, so the forward pass never meets a malformed weight.
#pragma once

#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/arch.h"

namespace sq {

// fp32 data that is either a view into a mapped file or owned. Copies share storage (a tied
// lm_head is the embedding); mutable_data() copies first unless this buffer owns it alone.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  static FloatBuffer owned(std::vector<float> v);
  static FloatBuffer from_tensor(const TensorView& t);  // exact upcast, zero-copy for aligned F32

  const float* data() const { return ptr_; }
  float* mutable_data();
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::shared_ptr<std::vector<float>> own_;
  std::shared_ptr<const MappedFile> keep_;
  const float* ptr_ = nullptr;
  size_t size_ = 0;
};

// INT8 weights of a Linear as stored in a compressed-tensors checkpoint: int8 [out, in] (a view
// into the mapped file), the dequantization scales (one per output row, or one), and the static
// activation scale when the checkpoint has one.
struct Int8Weight {
  const int8_t* data = nullptr;
  std::shared_ptr<const void> keep;  // owner of `data`
  std::vector<float> scales;         // [out] (per-channel) or [1] (per-tensor)
  std::optional<float> input_scale;  // static per-tensor activation scale (O3)
};

struct Linear {
  std::string name;  // HF module name, e.g. "model.layers.0.self_attn.q_proj"
  LinearRole role = LinearRole::kQ;
  int64_t in = 0, out = 0;
  FloatBuffer weight;                      // [out, in]; empty when the Linear is stored as INT8
  FloatBuffer bias;                        // [out] or empty
  std::shared_ptr<const Int8Weight> int8;  // set for INT8 checkpoints
};

struct Norm {
  std::string name;          // HF module name
  FloatBuffer weight, bias;  // bias only for LayerNorm
};

struct LayerWeights {
  Norm attn_norm, mlp_norm;
  std::array<std::optional<Linear>, kNumLinearRoles> linears;  // indexed by LinearRole
  Linear& linear(LinearRole r) { return *linears[static_cast<int>(r)]; }
  const Linear& linear(LinearRole r) const { return *linears[static_cast<int>(r)]; }
};

struct ModelWeights {
  FloatBuffer embed_tokens;     // [vocab, hidden]
  FloatBuffer embed_positions;  // [max_pos + offset, hidden] (OPT)
  Norm final_norm;              // weight empty when the model has none
  Linear lm_head;               // "lm_head" [vocab, hidden]; shares storage with embed when tied
  std::vector<LayerWeights> layers;
  DType stored_dtype = DType::kF32;  // dtype of the checkpoint's Linear weights
};

// Loads and validates every tensor the config needs from `ckpt`.
ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

// The one walker over the Linears of the model, in forward order.
void for_each_linear(ModelWeights& w, const std::function<void(int layer, Linear&)>& fn);
void for_each_linear(const ModelWeights& w,
                     const std::function<void(int layer, const Linear&)>& fn);

}  // namespace sq
