#include "quant/device_model.h"

#include <vector>

#include "core/error.h"
#include "quant/quantizer.h"

namespace sq {
namespace {

void check_supported(const ModelConfig& c) {
  SQ_CHECK(c.norm == NormKind::kRmsNorm && c.positions == PositionKind::kRope && c.gated_mlp &&
               c.act == Activation::kSilu && c.pre_norm && c.final_norm,
           "--device cuda runs llama, mistral and qwen2 models for now ({} is not supported on "
           "the GPU yet); use --device cpu",
           c.model_type);
}

DeviceModelSpec shape_spec(const ModelConfig& c, bool int8) {
  DeviceModelSpec s;
  s.vocab = c.vocab_size;
  s.hidden = c.hidden_size;
  s.ffn = c.intermediate_size;
  s.layers = c.n_layers;
  s.heads = c.n_heads;
  s.kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.max_positions = c.max_positions;
  s.eps = c.norm_eps;
  s.rope_theta = c.rope_theta;
  s.int8 = int8;
  return s;
}

}  // namespace

DeviceModelSpec random_device_spec(const ModelConfig& cfg, bool int8) {
  check_supported(cfg);
  DeviceModelSpec s = shape_spec(cfg, int8);
  s.random = true;
  return s;
}

std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, bool int8) {
  const ModelConfig& cfg = model.config();
  check_supported(cfg);
  const ModelWeights& w = model.weights();
  DeviceModelSpec s = shape_spec(cfg, int8);
  s.embed = w.embed_tokens.data();
  s.final_norm = w.final_norm.weight.data();
  s.lm_head = w.lm_head.weight.data();
  // Host int8 copies live until the engine has uploaded them (in make_cuda_engine).
  std::vector<std::vector<int8_t>> q_store;
  std::vector<std::vector<float>> s_store;
  auto linear = [&](const Linear& l) {
    DeviceLinearSpec d{l.in, l.out};
    d.bias = l.bias.empty() ? nullptr : l.bias.data();
    if (!int8) {
      SQ_CHECK(!l.weight.empty(), "{} holds INT8 weights; it runs on the GPU in INT8 only", l.name);
      d.weight = l.weight.data();
      return d;
    }
    SQ_CHECK(l.int8 || !l.weight.empty(), "internal error: {} has neither fp32 nor int8 weights",
             l.name);
    if (l.int8) {
      d.w_s8 = l.int8->data;
      s_store.emplace_back(l.int8->scales);
      if (s_store.back().size() == 1)
        s_store.back().assign(static_cast<size_t>(l.out), l.int8->scales[0]);
    } else {
      q_store.emplace_back(static_cast<size_t>(l.in * l.out));
      s_store.emplace_back(static_cast<size_t>(l.out));
      quant::quantize_weight_per_channel(l.weight.data(), l.out, l.in, q_store.back().data(),
                                         s_store.back().data());
      d.w_s8 = q_store.back().data();
    }
    d.w_scales = s_store.back().data();
    return d;
  };
  q_store.reserve(static_cast<size_t>(cfg.n_layers) * kNumLinearRoles);
  s_store.reserve(static_cast<size_t>(cfg.n_layers) * kNumLinearRoles);
  for (const LayerWeights& lw : w.layers) {
    DeviceLayerSpec d;
    d.attn_norm = lw.attn_norm.weight.data();
    d.mlp_norm = lw.mlp_norm.weight.data();
    d.q = linear(lw.linear(LinearRole::kQ));
    d.k = linear(lw.linear(LinearRole::kK));
    d.v = linear(lw.linear(LinearRole::kV));
    d.o = linear(lw.linear(LinearRole::kO));
    d.gate = linear(lw.linear(LinearRole::kGate));
    d.up = linear(lw.linear(LinearRole::kUp));
    d.down = linear(lw.linear(LinearRole::kDown));
    s.layer.push_back(d);
  }
  return make_cuda_engine(s);
}

}  // namespace sq
