#include "quant/device_model.h"

#include <algorithm>
#include <vector>

#include "backend/registry.h"
#include "core/error.h"
#include "core/progress.h"

namespace sq {
namespace {

void check_supported(const ModelConfig& c) {
  const bool llama_like = c.norm == NormKind::kRmsNorm && c.positions == PositionKind::kRope &&
                          c.gated_mlp && c.act == Activation::kSilu;
  const bool opt_like = c.norm == NormKind::kLayerNorm && c.positions == PositionKind::kLearned &&
                        !c.gated_mlp && c.act == Activation::kRelu;
  SQ_CHECK((llama_like || opt_like) && c.pre_norm && c.final_norm,
           "--device cuda runs llama, mistral, qwen2 and pre-LN opt models for now ({} with this "
           "configuration is not supported on the GPU yet); use --device cpu",
           c.model_type);
}

DeviceModelSpec shape_spec(const ModelConfig& c, DevicePrecision precision) {
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
  s.precision = precision;
  s.layer_norm = c.norm == NormKind::kLayerNorm;
  s.learned_positions = c.positions == PositionKind::kLearned;
  s.gated_mlp = c.gated_mlp;
  s.position_offset = c.position_offset;
  return s;
}

// The spec of `model` with each Linear described by `linear` (its storage kept alive by it).
template <typename LinearFn>
std::unique_ptr<DeviceEngine> start(const Model& model, DeviceModelSpec s, LinearFn linear) {
  const ModelWeights& w = model.weights();
  s.embed = w.embed_tokens.data();
  s.final_norm = w.final_norm.weight.data();
  s.lm_head = w.lm_head.weight.data();
  SQ_CHECK(!w.lm_head.weight.empty() && !w.embed_tokens.empty(),
           "internal error: the model has no fp32 embedding or lm_head");
  auto bias = [](const Norm& n) { return n.bias.empty() ? nullptr : n.bias.data(); };
  s.final_norm_bias = bias(w.final_norm);
  if (s.learned_positions) {
    SQ_CHECK(static_cast<int64_t>(w.embed_positions.size()) >=
                 (s.max_positions + s.position_offset) * s.hidden,
             "internal error: the model's position embeddings are shorter than its positions");
    s.embed_positions = w.embed_positions.data();
  }
  for (const LayerWeights& lw : w.layers) {
    DeviceLayerSpec d;
    d.attn_norm = lw.attn_norm.weight.data();
    d.mlp_norm = lw.mlp_norm.weight.data();
    d.attn_norm_bias = bias(lw.attn_norm);
    d.mlp_norm_bias = bias(lw.mlp_norm);
    d.q = linear(lw.linear(LinearRole::kQ));
    d.k = linear(lw.linear(LinearRole::kK));
    d.v = linear(lw.linear(LinearRole::kV));
    d.o = linear(lw.linear(LinearRole::kO));
    if (s.gated_mlp) d.gate = linear(lw.linear(LinearRole::kGate));
    d.up = linear(lw.linear(LinearRole::kUp));
    d.down = linear(lw.linear(LinearRole::kDown));
    s.layer.push_back(d);
  }
  return make_cuda_engine(s);
}

}  // namespace

DeviceActQuant device_act(ActGranularity a) {
  switch (a) {
    case ActGranularity::kPerTokenDynamic:
      return DeviceActQuant::kPerToken;
    case ActGranularity::kPerTensorDynamic:
      return DeviceActQuant::kPerTensorDynamic;
    case ActGranularity::kPerTensorStatic:
      return DeviceActQuant::kPerTensorStatic;
  }
  return DeviceActQuant::kPerToken;
}

DeviceModelSpec random_device_spec(const ModelConfig& cfg, DevicePrecision precision) {
  check_supported(cfg);
  DeviceModelSpec s = shape_spec(cfg, precision);
  s.random = true;
  return s;
}

std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, DevicePrecision precision) {
  SQ_CHECK(precision != DevicePrecision::kInt8,
           "internal error: INT8 device engines are made from an Int8Executor");
  check_supported(model.config());
  return start(model, shape_spec(model.config(), precision), [](const Linear& l) {
    SQ_CHECK(!l.weight.empty(), "{} holds INT8 weights; it runs on the GPU in INT8 only", l.name);
    DeviceLinearSpec d{l.in, l.out};
    d.weight = l.weight.data();
    d.bias = l.bias.empty() ? nullptr : l.bias.data();
    return d;
  });
}

void check_device_supported(const ModelConfig& cfg) {
  SQ_CHECK(
      cuda_compiled(),
      "--device cuda: this build has no CUDA backend; rebuild with nvcc installed (-DSQ_CUDA=ON)");
  SQ_CHECK(!cuda_devices().empty(),
           "--device cuda: no CUDA GPU is visible (driver missing or no device); run on the CPU");
  check_supported(cfg);
}

std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, const Int8Executor& exec,
                                                 bool f32_lm_head) {
  check_supported(model.config());
  DeviceModelSpec s = shape_spec(model.config(), DevicePrecision::kInt8);
  s.f32_lm_head = f32_lm_head;
  s.act = device_act(exec.act());
  s.quant_bmm = exec.int8_kv();
  // Host int8 copies live until the engine has uploaded them (in make_cuda_engine).
  std::vector<Int8Executor::Exported> store;
  store.reserve(static_cast<size_t>(model.config().n_layers) * kNumLinearRoles);
  return start(model, s, [&](const Linear& l) {
    store.push_back(exec.export_linear(l));
    const Int8Executor::Exported& x = store.back();
    DeviceLinearSpec d{l.in, l.out};
    d.w_s8 = x.w.data();
    d.w_scales = x.scales.data();
    d.bias = l.bias.empty() ? nullptr : l.bias.data();
    d.in_scale = x.in_scale;
    d.out_scale = x.out_scale;
    return d;
  });
}

ActStats calibrate_on_device(const Model& model, const CalibSet& set) {
  const ModelConfig& cfg = model.config();
  const int64_t longest = longest_document(set, cfg);
  auto engine = make_device_engine(model, DevicePrecision::kF32);
  engine->start_stats();
  std::vector<float> logits;
  Progress progress("calibrate (cuda)", set.tokens, "tokens");
  for (const auto& d : set.docs) {
    engine->reset(longest);
    engine->forward(d.data(), static_cast<int64_t>(d.size()), logits, false);
    progress.add(static_cast<int64_t>(d.size()));
  }
  progress.done();
  const DeviceStats ds = engine->read_stats();

  ActStats stats;
  // Columns [c0, c0 + n) of an output abs-max row → one Linear's per-tensor output abs-max.
  auto range_max = [](const std::vector<float>& v, int64_t c0, int64_t n) {
    return *std::max_element(v.begin() + c0, v.begin() + c0 + n);
  };
  auto put = [&](const Linear& lin, const std::vector<float>& in, float out_max) {
    LinearStats& s = stats.linears()[lin.name];
    s.channel_absmax = in;
    s.input_absmax = *std::max_element(in.begin(), in.end());
    s.output_absmax = out_max;
  };
  const int64_t qd = cfg.n_heads * cfg.head_dim, kvd = cfg.n_kv_heads * cfg.head_dim;
  for (size_t l = 0; l < ds.layers.size(); ++l) {
    const LayerWeights& lw = model.weights().layers[l];
    const DeviceLayerStats& s = ds.layers[l];
    put(lw.linear(LinearRole::kQ), s.attn_in, range_max(s.qkv_out, 0, qd));
    put(lw.linear(LinearRole::kK), s.attn_in, range_max(s.qkv_out, qd, kvd));
    put(lw.linear(LinearRole::kV), s.attn_in, range_max(s.qkv_out, qd + kvd, kvd));
    put(lw.linear(LinearRole::kO), s.o_in, range_max(s.o_out, 0, cfg.hidden_size));
    if (cfg.gated_mlp) {  // gate_up_out holds [gate | up]; ungated, fc1's output alone
      put(lw.linear(LinearRole::kGate), s.mlp_in,
          range_max(s.gate_up_out, 0, cfg.intermediate_size));
      put(lw.linear(LinearRole::kUp), s.mlp_in,
          range_max(s.gate_up_out, cfg.intermediate_size, cfg.intermediate_size));
    } else {
      put(lw.linear(LinearRole::kUp), s.mlp_in, range_max(s.gate_up_out, 0, cfg.intermediate_size));
    }
    put(lw.linear(LinearRole::kDown), s.down_in, range_max(s.down_out, 0, cfg.hidden_size));
  }
  put(model.weights().lm_head, ds.lm_in, range_max(ds.lm_out, 0, cfg.vocab_size));
  stats.info.documents = static_cast<int64_t>(set.docs.size());
  stats.info.tokens = set.tokens;
  stats.info.separator = set.separator;
  return stats;
}

}  // namespace sq
