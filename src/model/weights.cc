#include "model/weights.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <regex>

#include "core/error.h"

namespace sq {

FloatBuffer FloatBuffer::owned(std::vector<float> v) {
  FloatBuffer b;
  b.own_ = std::make_shared<std::vector<float>>(std::move(v));
  b.ptr_ = b.own_->data();
  b.size_ = b.own_->size();
  return b;
}

FloatBuffer FloatBuffer::from_tensor(const TensorView& t) {
  if (t.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
    FloatBuffer b;
    b.keep_ = t.file;
    b.ptr_ = reinterpret_cast<const float*>(t.data);
    b.size_ = static_cast<size_t>(t.numel());
    return b;
  }
  return owned(t.to_f32());
}

float* FloatBuffer::mutable_data() {
  if (size_ == 0) return nullptr;
  if (!own_ || own_.use_count() > 1) {
    own_ = std::make_shared<std::vector<float>>(ptr_, ptr_ + size_);
    ptr_ = own_->data();
    keep_.reset();
  }
  return own_->data();
}

namespace {

class Loader {
 public:
  Loader(const Checkpoint& c, const ModelConfig& cfg) : ckpt_(c), cfg_(cfg) {}

  const TensorView& tensor(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = ckpt_.get(name);
    check(t, shape);
    return t;
  }
  const TensorView* maybe(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView* t = ckpt_.find(name);
    if (t) check(*t, shape);
    return t;
  }
  FloatBuffer load(const std::string& name, const std::vector<int64_t>& shape) const {
    return FloatBuffer::from_tensor(tensor(name, shape));
  }

 private:
  void check(const TensorView& t, const std::vector<int64_t>& shape) const {
    SQ_CHECK(is_float(t.dtype),
             "tensor '{}' in {} has dtype {}; expected F32, F16 or BF16 (quantized checkpoints are "
             "not loadable yet)",
             t.name, ckpt_.dir().string(), dtype_name(t.dtype));
    SQ_CHECK(t.shape == shape,
             "tensor '{}' in {} has shape [{}] but config.json implies [{}]; the checkpoint does "
             "not match its config",
             t.name, ckpt_.dir().string(), fmt::join(t.shape, ", "), fmt::join(shape, ", "));
  }
  const Checkpoint& ckpt_;
  const ModelConfig& cfg_;
};

Norm load_norm(const Loader& ld, const std::string& name, const ModelConfig& cfg) {
  Norm n;
  n.name = name;
  n.weight = ld.load(name + ".weight", {cfg.hidden_size});
  if (cfg.norm == NormKind::kLayerNorm) n.bias = ld.load(name + ".bias", {cfg.hidden_size});
  return n;
}

std::pair<int64_t, int64_t> linear_dims(LinearRole r, const ModelConfig& c) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (r) {
    case LinearRole::kQ:
      return {c.hidden_size, q};
    case LinearRole::kK:
    case LinearRole::kV:
      return {c.hidden_size, kv};
    case LinearRole::kO:
      return {q, c.hidden_size};
    case LinearRole::kGate:
    case LinearRole::kUp:
      return {c.hidden_size, c.intermediate_size};
    case LinearRole::kDown:
      return {c.intermediate_size, c.hidden_size};
  }
  return {0, 0};
}

bool has_bias(LinearRole r, const ModelConfig& c) {
  switch (r) {
    case LinearRole::kQ:
    case LinearRole::kK:
    case LinearRole::kV:
      return c.qkv_bias;
    case LinearRole::kO:
      return c.o_bias;
    default:
      return c.mlp_bias;
  }
}

// An INT8 Linear of a compressed-tensors checkpoint: weight I8 [out, in], weight_scale [out, 1]
// (channel) or [1] (tensor) in a float dtype, input_scale [1] for static activations.
std::shared_ptr<Int8Weight> load_int8(const Checkpoint& ckpt, const Linear& lin,
                                      const QuantFormat& f) {
  const std::string where = ckpt.dir().string();
  const TensorView& w = ckpt.get(lin.name + ".weight");
  SQ_CHECK(w.dtype == DType::kI8 && w.shape == std::vector<int64_t>({lin.out, lin.in}),
           "INT8 checkpoint {}: '{}.weight' must be I8 [{}, {}] but is {} [{}]", where, lin.name,
           lin.out, lin.in, dtype_name(w.dtype), fmt::join(w.shape, ", "));
  const TensorView& sc = ckpt.get(lin.name + ".weight_scale");
  const bool per_channel = f.weight == WeightGranularity::kPerChannel;
  const int64_t want = per_channel ? lin.out : 1;
  SQ_CHECK(is_float(sc.dtype) && sc.numel() == want &&
               (sc.shape == std::vector<int64_t>{want, 1} ||
                sc.shape == std::vector<int64_t>{want} || (!per_channel && sc.shape.empty())),
           "INT8 checkpoint {}: '{}.weight_scale' must be a float [{}, 1] ({} weights) but is {} "
           "[{}]",
           where, lin.name, want, per_channel ? "per-channel" : "per-tensor", dtype_name(sc.dtype),
           fmt::join(sc.shape, ", "));
  auto q = std::make_shared<Int8Weight>();
  q->data = reinterpret_cast<const int8_t*>(w.data);
  q->keep = w.file;
  q->scales = sc.to_f32();
  for (float v : q->scales) {
    SQ_CHECK(std::isfinite(v) && v > 0,
             "INT8 checkpoint {}: '{}.weight_scale' holds {}; scales "
             "must be positive",
             where, lin.name, v);
  }
  for (int64_t i = 0; i < lin.out * lin.in; ++i) {
    SQ_CHECK(q->data[i] != -128,
             "INT8 checkpoint {}: '{}.weight' holds -128; symmetric int8 "
             "weights are in [-127, 127]",
             where, lin.name);
  }
  if (f.act == ActGranularity::kPerTensorStatic) {
    const TensorView& is = ckpt.get(lin.name + ".input_scale");
    SQ_CHECK(is_float(is.dtype) && is.numel() == 1,
             "INT8 checkpoint {}: '{}.input_scale' must hold one float", where, lin.name);
    q->input_scale = is.to_f32()[0];
    SQ_CHECK(*q->input_scale > 0, "INT8 checkpoint {}: '{}.input_scale' must be positive", where,
             lin.name);
  }
  return q;
}

bool ignored(const QuantFormat& f, const std::string& name) {
  for (const auto& i : f.ignore) {
    if (i == name || (i.rfind("re:", 0) == 0 && std::regex_match(name, std::regex(i.substr(3))))) {
      return true;
    }
  }
  return false;
}

}  // namespace

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg) {
  const ArchDescriptor& d = descriptor_for(cfg.arch);
  const Loader ld(ckpt, cfg);
  ModelWeights w;
  const std::vector<int64_t> emb_shape = {cfg.vocab_size, cfg.hidden_size};
  const TensorView* emb = ld.maybe(d.embed_tokens + ".weight", emb_shape);
  const TensorView* head = ld.maybe(d.lm_head + ".weight", emb_shape);
  // Tied checkpoints may store only one of the two (tinystories keeps lm_head, OPT keeps embed).
  if (!emb && cfg.tie_embeddings) emb = head;
  if (!head && cfg.tie_embeddings) head = emb;
  SQ_CHECK(emb != nullptr, "missing tensor '{}.weight' in checkpoint {}", d.embed_tokens,
           ckpt.dir().string());
  SQ_CHECK(head != nullptr, "missing tensor '{}.weight' in checkpoint {}", d.lm_head,
           ckpt.dir().string());
  w.embed_tokens = FloatBuffer::from_tensor(*emb);
  w.lm_head.name = d.lm_head;
  w.lm_head.in = cfg.hidden_size;
  w.lm_head.out = cfg.vocab_size;
  w.lm_head.weight = head == emb ? w.embed_tokens : FloatBuffer::from_tensor(*head);
  if (!d.embed_positions.empty()) {
    w.embed_positions = ld.load(d.embed_positions + ".weight",
                                {cfg.max_positions + cfg.position_offset, cfg.hidden_size});
  }
  if (cfg.final_norm) w.final_norm = load_norm(ld, d.final_norm, cfg);

  w.layers.resize(static_cast<size_t>(cfg.n_layers));
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string prefix = fmt::format("{}{}.", d.layer_prefix, l);
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = load_norm(ld, prefix + d.attn_norm, cfg);
    lw.mlp_norm = load_norm(ld, prefix + d.mlp_norm, cfg);
    for (const LinearSpec& s : d.linears) {
      if (!cfg.gated_mlp && s.role == LinearRole::kGate) continue;
      Linear lin;
      lin.name = prefix + s.name;
      lin.role = s.role;
      std::tie(lin.in, lin.out) = linear_dims(s.role, cfg);
      if (cfg.quant && !ignored(*cfg.quant, lin.name)) {
        lin.int8 = load_int8(ckpt, lin, *cfg.quant);
      } else {
        const TensorView& t = ld.tensor(lin.name + ".weight", {lin.out, lin.in});
        if (l == 0 && s.role == LinearRole::kQ) w.stored_dtype = t.dtype;
        lin.weight = FloatBuffer::from_tensor(t);
      }
      if (has_bias(s.role, cfg)) lin.bias = ld.load(lin.name + ".bias", {lin.out});
      lw.linears[static_cast<int>(s.role)] = std::move(lin);
    }
  }
  return w;
}

void for_each_linear(ModelWeights& w, const std::function<void(int, Linear&)>& fn) {
  for (size_t l = 0; l < w.layers.size(); ++l) {
    for (auto& lin : w.layers[l].linears) {
      if (lin) fn(static_cast<int>(l), *lin);
    }
  }
}

void for_each_linear(const ModelWeights& w, const std::function<void(int, const Linear&)>& fn) {
  for (size_t l = 0; l < w.layers.size(); ++l) {
    for (const auto& lin : w.layers[l].linears) {
      if (lin) fn(static_cast<int>(l), *lin);
    }
  }
}

}  // namespace sq
