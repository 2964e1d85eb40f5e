#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace sq {

KvCache::KvCache(const ModelConfig& cfg, int64_t capacity)
    : capacity_(capacity), n_layers_(cfg.n_layers), row_(cfg.n_kv_heads * cfg.head_dim) {}

void KvCache::allocate(bool int8) {
  if (allocated_) {
    SQ_CHECK(int8 == int8_, "internal error: a KV cache was reused across precisions");
    return;
  }
  const size_t n = static_cast<size_t>(capacity_ * row_), layers = static_cast<size_t>(n_layers_);
  if (int8) {
    k8_.assign(layers, std::vector<int8_t>(n));
    v8_.assign(layers, std::vector<int8_t>(n));
    ks_.assign(layers, std::vector<float>(static_cast<size_t>(capacity_)));
    vs_.assign(layers, std::vector<float>(static_cast<size_t>(capacity_)));
  } else {
    k_.assign(layers, std::vector<float>(n));
    v_.assign(layers, std::vector<float>(n));
  }
  allocated_ = true;
  int8_ = int8;
}

size_t KvCache::bytes() const {
  size_t b = 0;
  for (const auto* group : {&k_, &v_, &ks_, &vs_})
    for (const auto& t : *group) b += t.size() * sizeof(float);
  for (const auto* group : {&k8_, &v8_})
    for (const auto& t : *group) b += t.size();
  return b;
}

void LinearExecutor::run_to_int8(int, const Linear& lin, const float*, int64_t, int8_t*, float*,
                                 const QuantizedInput*) const {
  fail("internal error: this executor does not produce int8 outputs (Linear {})", lin.name);
}

namespace {

// Dequantizes rows [0, n) of an int8 cache into fp32: out[j, :] = q[j, :] · scale[j].
void dequantize_rows(const int8_t* q, const float* scale, int64_t n, int64_t row, float* out) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j)
          for (int64_t i = 0; i < row; ++i)
            out[j * row + i] = static_cast<float>(q[j * row + i]) * scale[j];
      },
      16);
}

}  // namespace

Model Model::load(const std::filesystem::path& dir) {
  ModelConfig cfg = load_model_config(dir);
  Checkpoint ckpt = Checkpoint::open_dir(dir);
  ModelWeights w = load_weights(ckpt, cfg);
  return Model(std::move(cfg), std::move(ckpt), std::move(w));
}

Model::Model(ModelConfig cfg, Checkpoint ckpt, ModelWeights w)
    : cfg_(std::move(cfg)), ckpt_(std::move(ckpt)), weights_(std::move(w)) {
  if (cfg_.positions == PositionKind::kRope) {
    // As HF: inv_freq = 1 / theta^(arange(0, d, 2) / d), computed in fp32.
    const int64_t half = cfg_.head_dim / 2;
    inv_freq_.resize(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const float expo = static_cast<float>(2 * i) / static_cast<float>(cfg_.head_dim);
      inv_freq_[i] = 1.0f / std::pow(static_cast<float>(cfg_.rope_theta), expo);
    }
  }
}

void Model::run_linear(int layer, const Linear& lin, const float* x, float* y, int64_t m,
                       const ForwardOptions& opt, const QuantizedInput* qx) const {
  if (opt.executor) {
    opt.executor->run(layer, lin, x, y, m, qx);
  } else {
    ops::linear_f32(x, lin.weight.data(), lin.bias.empty() ? nullptr : lin.bias.data(), y, m,
                    lin.out, lin.in);
  }
  if (opt.observer) opt.observer->observe(layer, lin, x, y, m);
}

void Model::forward(std::span<const int32_t> tokens, KvCache& cache, std::vector<float>& logits,
                    const ForwardOptions& opt) const {
  const int64_t m = static_cast<int64_t>(tokens.size());
  const int64_t pos0 = cache.size();
  const int64_t d = cfg_.hidden_size;
  SQ_CHECK(m > 0, "forward: no tokens to run");
  SQ_CHECK(pos0 + m <= cache.capacity(), "context of {} tokens exceeds the KV cache capacity of {}",
           pos0 + m, cache.capacity());
  SQ_CHECK(pos0 + m <= cfg_.max_positions,
           "context of {} tokens exceeds the model's {} positions (max_position_embeddings); use a "
           "shorter --ctx or prompt",
           pos0 + m, cfg_.max_positions);

  std::vector<float> x(static_cast<size_t>(m * d));
  for (int64_t t = 0; t < m; ++t) {
    const int32_t id = tokens[t];
    SQ_CHECK(id >= 0 && id < cfg_.vocab_size, "token id {} is outside the vocabulary (size {})", id,
             cfg_.vocab_size);
    const float* e = weights_.embed_tokens.data() + static_cast<int64_t>(id) * d;
    std::copy(e, e + d, x.data() + t * d);
    if (cfg_.positions == PositionKind::kLearned) {
      const float* p = weights_.embed_positions.data() + (pos0 + t + cfg_.position_offset) * d;
      for (int64_t j = 0; j < d; ++j) x[t * d + j] += p[j];
    }
  }

  const int64_t qd = cfg_.n_heads * cfg_.head_dim, kvd = cfg_.n_kv_heads * cfg_.head_dim;
  const int64_t ffn = cfg_.intermediate_size;
  std::vector<float> h(x.size()), q(static_cast<size_t>(m * qd)), attn(q.size()), o(x.size());
  std::vector<float> g(static_cast<size_t>(m * ffn)), u(g.size());
  const bool int8_kv = opt.executor && opt.executor->int8_kv();
  cache.allocate(int8_kv);
  std::vector<float> kbuf, vbuf;  // dequantized keys/values of the int8 cache, one layer at a time
  const float scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));

  auto norm = [&](const Norm& n, const float* in, float* out) {
    if (cfg_.norm == NormKind::kRmsNorm) {
      ops::rms_norm(in, n.weight.data(), cfg_.norm_eps, out, m, d);
    } else {
      ops::layer_norm(in, n.weight.data(), n.bias.empty() ? nullptr : n.bias.data(), cfg_.norm_eps,
                      out, m, d);
    }
  };
  // Per-token INT8 executors get the norm output quantized once, in the norm's pass, for all the
  // Linears that read it (pre-norm models: q/k/v and gate/up or fc1).
  const bool fuse_q8 = opt.executor && opt.executor->takes_per_token_int8() && cfg_.pre_norm;
  std::vector<int8_t> hq(fuse_q8 ? static_cast<size_t>(m * d) : 0);
  std::vector<float> hs(fuse_q8 ? static_cast<size_t>(m) : 0);
  const QuantizedInput h_q8{hq.data(), hs.data()};
  const QuantizedInput* hqx = fuse_q8 ? &h_q8 : nullptr;
  auto pre_norm = [&](const Norm& n) {
    if (!fuse_q8) return norm(n, x.data(), h.data());
    if (cfg_.norm == NormKind::kRmsNorm) {
      ops::rms_norm_q8(x.data(), n.weight.data(), cfg_.norm_eps, h.data(), hq.data(), hs.data(), m,
                       d);
    } else {
      ops::layer_norm_q8(x.data(), n.weight.data(), n.bias.empty() ? nullptr : n.bias.data(),
                         cfg_.norm_eps, h.data(), hq.data(), hs.data(), m, d);
    }
  };

  for (int l = 0; l < cfg_.n_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    // Attention block. Pre-norm: x += attn(norm(x)); post-norm (OPT-350m): x = norm(x + attn(x)).
    const float* attn_in = x.data();
    if (cfg_.pre_norm) {
      pre_norm(lw.attn_norm);
      attn_in = h.data();
    }
    run_linear(l, lw.linear(LinearRole::kQ), attn_in, q.data(), m, opt, hqx);
    if (cfg_.positions == PositionKind::kRope)
      ops::rope(q.data(), m, cfg_.n_heads, cfg_.head_dim, pos0, inv_freq_.data());
    const float *keys = nullptr, *values = nullptr;
    if (int8_kv) {
      // The cache holds the quantized projections before RoPE (as NUMERICS §2 quantizes them);
      // every key is dequantized and rotated again, so the products equal the fake-quant path.
      const Linear &lk = lw.linear(LinearRole::kK), &lv = lw.linear(LinearRole::kV);
      opt.executor->run_to_int8(l, lk, attn_in, m, cache.k8(l) + pos0 * kvd,
                                cache.k_scale(l) + pos0, hqx);
      opt.executor->run_to_int8(l, lv, attn_in, m, cache.v8(l) + pos0 * kvd,
                                cache.v_scale(l) + pos0, hqx);
      const int64_t n = pos0 + m;
      kbuf.resize(static_cast<size_t>(n * kvd));
      vbuf.resize(kbuf.size());
      dequantize_rows(cache.k8(l), cache.k_scale(l), n, kvd, kbuf.data());
      dequantize_rows(cache.v8(l), cache.v_scale(l), n, kvd, vbuf.data());
      if (opt.observer) {
        opt.observer->observe(l, lk, attn_in, kbuf.data() + pos0 * kvd, m);
        opt.observer->observe(l, lv, attn_in, vbuf.data() + pos0 * kvd, m);
      }
      if (cfg_.positions == PositionKind::kRope)
        ops::rope(kbuf.data(), n, cfg_.n_kv_heads, cfg_.head_dim, 0, inv_freq_.data());
      keys = kbuf.data();
      values = vbuf.data();
    } else {
      float* kc = cache.k(l) + pos0 * kvd;
      run_linear(l, lw.linear(LinearRole::kK), attn_in, kc, m, opt, hqx);
      run_linear(l, lw.linear(LinearRole::kV), attn_in, cache.v(l) + pos0 * kvd, m, opt, hqx);
      if (cfg_.positions == PositionKind::kRope)
        ops::rope(kc, m, cfg_.n_kv_heads, cfg_.head_dim, pos0, inv_freq_.data());
      keys = cache.k(l);
      values = cache.v(l);
    }
    ops::attention(q.data(), keys, values, attn.data(), m, pos0, cfg_.n_heads, cfg_.n_kv_heads,
                   cfg_.head_dim, scale);
    run_linear(l, lw.linear(LinearRole::kO), attn.data(), o.data(), m, opt);
    ops::add_inplace(x.data(), o.data(), m * d);
    if (!cfg_.pre_norm) norm(lw.attn_norm, x.data(), x.data());

    // MLP block.
    const float* mlp_in = x.data();
    if (cfg_.pre_norm) {
      pre_norm(lw.mlp_norm);
      mlp_in = h.data();
    }
    if (cfg_.gated_mlp) {
      run_linear(l, lw.linear(LinearRole::kGate), mlp_in, g.data(), m, opt, hqx);
      run_linear(l, lw.linear(LinearRole::kUp), mlp_in, u.data(), m, opt, hqx);
      ops::silu_mul(g.data(), u.data(), g.data(), m * ffn);
    } else {
      run_linear(l, lw.linear(LinearRole::kUp), mlp_in, g.data(), m, opt, hqx);
      if (cfg_.act == Activation::kRelu) {
        ops::relu_inplace(g.data(), m * ffn);
      } else {
        ops::gelu_inplace(g.data(), m * ffn);
      }
    }
    run_linear(l, lw.linear(LinearRole::kDown), g.data(), o.data(), m, opt);
    ops::add_inplace(x.data(), o.data(), m * d);
    if (!cfg_.pre_norm) norm(lw.mlp_norm, x.data(), x.data());
  }
  cache.advance(m);

  const int64_t rows = opt.last_logits_only ? 1 : m;
  const float* final_in = x.data() + (m - rows) * d;
  if (cfg_.final_norm) {
    const int64_t mm = rows;
    if (cfg_.norm == NormKind::kRmsNorm) {
      ops::rms_norm(final_in, weights_.final_norm.weight.data(), cfg_.norm_eps, h.data(), mm, d);
    } else {
      ops::layer_norm(final_in, weights_.final_norm.weight.data(), weights_.final_norm.bias.data(),
                      cfg_.norm_eps, h.data(), mm, d);
    }
    final_in = h.data();
  }
  logits.resize(static_cast<size_t>(rows * cfg_.vocab_size));
  // lm_head is never quantized (NUMERICS.md §2) but is observed, as the original tool does.
  ops::linear_f32(final_in, weights_.lm_head.weight.data(), nullptr, logits.data(), rows,
                  cfg_.vocab_size, d);
  if (opt.observer) opt.observer->observe(-1, weights_.lm_head, final_in, logits.data(), rows);
}

}  // namespace sq
