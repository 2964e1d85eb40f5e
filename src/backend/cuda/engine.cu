// CUDA DeviceEngine (engine.h): the decoder forward of src/model on the GPU for pre-norm decoders,
// RMSNorm + RoPE + gated SiLU MLP (llama family) or LayerNorm + learned positions + ReLU MLP (OPT;
// the norm's output goes through the fp32 buffer before its quantization). Linears run as cuBLASLt
// fp32 or bf16 GEMMs (fp32 out) or as our INT8 kernels. q/k/v and gate/up are each one GEMM over
// weights concatenated at load (one launch, and enough tiles to fill the GPU at prefill sizes);
// every element of the fused output is computed exactly as by its own Linear. With per-token
// activations the residual add is fused with the next norm and the per-token quantization, SiLU·up
// with the down_proj input quantization (at prefill, SiLU·up in the gate|up GEMM's epilogue: its
// weight rows are stored gate/up-interleaved); per-tensor activations (dynamic or static) go
// through an fp32 row buffer. RoPE is fused with the KV-cache write. Everything outside the GEMMs
// (residual, norms, RoPE, attention, KV cache) is fp32. Decode steps (one token) replay a CUDA
// graph captured once: the position lives in device memory, so the same graph serves every step.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/engine.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/lt_gemm.cuh"
#include "backend/cuda/norm_quant_cuda.h"
#include "backend/cuda/quant_ops.cuh"

namespace sq::cuda {
namespace {

template <typename T>
T* device_alloc(int64_t n) {
  T* p = nullptr;
  SQ_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  return p;
}

template <typename T>
T* upload(const T* host, int64_t n) {
  T* p = device_alloc<T>(n);
  SQ_CUDA_CHECK(cudaMemcpy(p, host, static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

__nv_bfloat16* upload_bf16(const float* host, int64_t n) {
  std::vector<__nv_bfloat16> b(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) b[i] = __float2bfloat16_rn(host[i]);
  return upload(b.data(), n);
}

struct DevLinear {
  int64_t in = 0, out = 0;
  __nv_bfloat16* w_bf16 = nullptr;
  float* w_f32 = nullptr;
  int8_t* w_s8 = nullptr;
  float* w_scales = nullptr;
  float* bias = nullptr;
  float* in_scale = nullptr;      // device, static activations
  std::vector<float> out_scales;  // host, per fused part (static --quant-bmm)
};

struct DevLayer {
  float *attn_norm = nullptr, *mlp_norm = nullptr;
  float *attn_norm_b = nullptr, *mlp_norm_b = nullptr;  // LayerNorm biases (or null)
  // qkv: rows [q | k | v]; gate_up: rows [gate | up], or fc1 alone in ungated MLPs.
  DevLinear qkv, o, gate_up, down;
};

// Host-side concatenation of Linears that share an input, along the output dimension. A missing
// bias becomes zeros when a sibling has one (x + 0 is exact). Static input scales must agree:
// the parts read one input.
DeviceLinearSpec concat(const std::vector<DeviceLinearSpec>& parts, std::vector<float>& weight,
                        std::vector<int8_t>& w_s8, std::vector<float>& scales,
                        std::vector<float>& bias) {
  DeviceLinearSpec c{parts.front().in, 0};
  c.in_scale = parts.front().in_scale;
  bool any_bias = false;
  for (const auto& p : parts) {
    if (p.in != c.in) throw std::runtime_error("internal error: fused Linears differ in width");
    if (p.in_scale != c.in_scale)
      throw std::runtime_error(
          "--device cuda: Linears that share an input have different static input scales; "
          "calibrate again or run on the CPU");
    c.out += p.out;
    any_bias = any_bias || p.bias;
  }
  for (const auto& p : parts) {
    const size_t n = static_cast<size_t>(p.in * p.out);
    if (p.weight) weight.insert(weight.end(), p.weight, p.weight + n);
    if (p.w_s8) w_s8.insert(w_s8.end(), p.w_s8, p.w_s8 + n);
    if (p.w_scales) scales.insert(scales.end(), p.w_scales, p.w_scales + p.out);
    if (any_bias) {
      if (p.bias) {
        bias.insert(bias.end(), p.bias, p.bias + p.out);
      } else {
        bias.insert(bias.end(), static_cast<size_t>(p.out), 0.0f);
      }
    }
  }
  c.weight = weight.empty() ? nullptr : weight.data();
  c.w_s8 = w_s8.empty() ? nullptr : w_s8.data();
  c.w_scales = scales.empty() ? nullptr : scales.data();
  c.bias = bias.empty() ? nullptr : bias.data();
  return c;
}

// Rows of a fused [gate | up] Linear reordered in place into gemm_s8_cuda.h's kGluBlock-interleaved
// layout (weights, per-channel scales and bias alike; the pointers in the spec stay valid).
void interleave_gate_up(int64_t ffn, int64_t in, std::vector<float>& weight,
                        std::vector<int8_t>& w_s8, std::vector<float>& scales,
                        std::vector<float>& bias) {
  auto permute = [&](auto& v, int64_t row) {
    if (v.empty()) return;
    const auto src = v;
    for (int64_t r = 0; r < 2 * ffn; ++r)
      std::copy_n(src.begin() + glu_source_row(r, ffn) * row, row, v.begin() + r * row);
  };
  permute(weight, in), permute(w_s8, in), permute(scales, 1), permute(bias, 1);
}

class CudaEngine : public DeviceEngine {
 public:
  explicit CudaEngine(const DeviceModelSpec& spec) : s_(spec) {
    if (!ops::attention_supports(s_.head_dim))
      throw std::runtime_error("--device cuda: head_dim " + std::to_string(s_.head_dim) +
                               " is not supported yet (16, 32, 64, 80, 96, 128, 256 or a multiple "
                               "of 4 up to 128)");
    if (s_.hidden > 8192)
      throw std::runtime_error("--device cuda: hidden sizes above 8192 are not supported yet");
    try {
      SQ_CUDA_CHECK(cudaStreamCreate(&stream_));
      load_weights();
      // As the CPU engine (and HF): inv_freq = 1 / theta^(2i/d) in fp32. Learned positions: all
      // zero, which makes the rotation kernels exact copies (cos 0 = 1, sin 0 = 0).
      std::vector<float> inv(static_cast<size_t>(s_.head_dim / 2), 0.0f);
      for (int64_t i = 0; i < s_.head_dim / 2 && !s_.learned_positions; ++i)
        inv[i] = 1.0f / std::pow(static_cast<float>(s_.rope_theta),
                                 static_cast<float>(2 * i) / static_cast<float>(s_.head_dim));
      inv_freq_ = upload(inv.data(), static_cast<int64_t>(inv.size()));
      pos_ = device_alloc<int>(1);
      slot_ = device_alloc<float>(1);
      const int64_t ws_floats = ops::attention_workspace_floats(s_.heads, s_.head_dim);
      attn_ws_ = device_alloc<float>(ws_floats);
      SQ_CUDA_CHECK(cudaMemsetAsync(attn_ws_, 0, ws_floats * sizeof(float), stream_));
      SQ_CUDA_CHECK(cudaMallocHost(&h_pos_, sizeof(int)));
      SQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    } catch (...) {
      release();  // the destructor does not run for a constructor that throws
      throw;
    }
    const char* env = std::getenv("SQ_CUDA_GRAPHS");
    use_graphs_ = !(env && std::string(env) == "0");
  }

  ~CudaEngine() override { release(); }

  void reset(int64_t capacity) override {
    if (capacity > s_.max_positions)
      throw std::runtime_error("context of " + std::to_string(capacity) +
                               " tokens exceeds the model's positions");
    if (capacity > capacity_) {
      free_cache();
      capacity_ = 0;  // no cache until the new one is complete
      const int64_t kvd = s_.kv_heads * s_.head_dim, n = s_.layers * capacity * kvd;
      if (int8_kv()) {  // int8 rows + one scale per position; one layer's fp32 scratch
        k8_ = device_alloc<int8_t>(n), v8_ = device_alloc<int8_t>(n);
        k8_scale_ = device_alloc<float>(s_.layers * capacity);
        v8_scale_ = device_alloc<float>(s_.layers * capacity);
        k_cache_ = device_alloc<float>(capacity * kvd);
        v_cache_ = device_alloc<float>(capacity * kvd);
      } else {
        k_cache_ = device_alloc<float>(n);
        v_cache_ = device_alloc<float>(n);
      }
      capacity_ = capacity;
      drop_graph();  // it holds the old cache pointers
    }
    size_ = 0;
  }

  int64_t cache_size() const override { return size_; }
  int64_t linear_weight_bytes() const override { return weight_bytes_; }
  std::string describe() const override {
    const std::string what = s_.precision == DevicePrecision::kF32    ? "fp32"
                             : s_.precision == DevicePrecision::kBf16 ? "bf16"
                                                                      : "INT8";
    return what + " Linears on the GPU" + (int8_kv() ? ", int8 KV cache" : "") +
           (use_graphs_ ? ", decode as a CUDA graph" : "");
  }

  void start_stats() override {
    if (s_.precision != DevicePrecision::kF32)
      throw std::runtime_error("internal error: statistics need an fp32 engine");
    if (!stats_) stats_ = device_alloc<float>(stats_floats());
    SQ_CUDA_CHECK(cudaMemset(stats_, 0, stats_floats() * sizeof(float)));
    stats_on_ = true;
  }

  DeviceStats read_stats() override {
    if (!stats_) throw std::runtime_error("internal error: read_stats before start_stats");
    std::vector<float> h(static_cast<size_t>(stats_floats()));
    SQ_CUDA_CHECK(cudaMemcpy(h.data(), stats_, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    DeviceStats out;
    const float* p = h.data();
    auto take = [&](int64_t n) {
      std::vector<float> v(p, p + n);
      p += n;
      return v;
    };
    for (int64_t l = 0; l < s_.layers; ++l) {
      DeviceLayerStats ls;
      const auto w = stat_widths();
      ls.attn_in = take(w[0]), ls.qkv_out = take(w[1]), ls.o_in = take(w[2]);
      ls.o_out = take(w[3]), ls.mlp_in = take(w[4]), ls.gate_up_out = take(w[5]);
      ls.down_in = take(w[6]), ls.down_out = take(w[7]);
      out.layers.push_back(std::move(ls));
    }
    out.lm_in = take(s_.hidden);
    out.lm_out = take(s_.vocab);
    return out;
  }

  void forward(const int32_t* tokens, int64_t m, std::vector<float>& logits,
               bool last_only) override {
    if (m <= 0) throw std::runtime_error("forward: no tokens to run");
    if (size_ + m > capacity_)
      throw std::runtime_error("context exceeds the KV cache capacity; reset() with more");
    for (int64_t i = 0; i < m; ++i)
      if (tokens[i] < 0 || tokens[i] >= s_.vocab)
        throw std::runtime_error("token id outside the vocabulary");
    ensure_work(m);
    ensure_logits(last_only ? 1 : m);
    std::copy(tokens, tokens + m, h_ids_);
    *h_pos_ = static_cast<int>(size_);
    // One-token steps replay a graph; the first runs eagerly (plans and one-time kernel set-up
    // happen outside capture), the second captures.
    const bool step = m == 1 && last_only && use_graphs_ && !stats_on_;
    if (step && !graph_ && decode_steps_ > 0) capture_step();
    if (step && graph_) {
      SQ_CUDA_CHECK(cudaGraphLaunch(graph_, stream_));
    } else {
      enqueue(m, last_only);
    }
    if (step) ++decode_steps_;
    SQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    size_ += m;
    const int64_t rows = last_only ? 1 : m;
    logits.assign(h_logits_, h_logits_ + rows * s_.vocab);
  }

 private:
  void release() {
    auto free_linear = [](DevLinear& l) {
      cudaFree(l.w_bf16), cudaFree(l.w_f32), cudaFree(l.w_s8), cudaFree(l.w_scales);
      cudaFree(l.bias), cudaFree(l.in_scale);
    };
    for (auto& l : layers_) {
      cudaFree(l.attn_norm), cudaFree(l.mlp_norm), cudaFree(l.attn_norm_b), cudaFree(l.mlp_norm_b);
      for (DevLinear* x : {&l.qkv, &l.o, &l.gate_up, &l.down}) free_linear(*x);
    }
    layers_.clear();
    cudaFree(embed_), cudaFree(final_norm_), cudaFree(lm_head_), cudaFree(lm_head_f32_);
    cudaFree(final_norm_b_), cudaFree(embed_pos_);
    cudaFree(inv_freq_), cudaFree(pos_);
    free_cache();
    cudaFree(slot_), cudaFree(attn_ws_), cudaFree(stats_), cudaFreeHost(h_pos_);
    free_work();
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  bool int8() const { return s_.precision == DevicePrecision::kInt8; }
  bool f32_head() const { return f32() || s_.f32_lm_head; }
  bool f32() const { return s_.precision == DevicePrecision::kF32; }
  bool per_token() const { return s_.act == DeviceActQuant::kPerToken; }
  // --quant-bmm: k and v live in an int8 cache (quantized before RoPE, as NUMERICS §2 says).
  bool int8_kv() const { return int8() && s_.quant_bmm; }
  // gate|up weights kGluBlock-interleaved: SiLU · up in the GEMM epilogue at prefill, read through
  // the interleaved index by the quantizing SiLU kernel at decode.
  bool glu() const {
    return fuse_ && int8() && per_token() && s_.gated_mlp && s_.ffn % kGluBlock == 0;
  }
  void free_cache() {
    cudaFree(k_cache_), cudaFree(v_cache_), cudaFree(k8_), cudaFree(v8_);
    cudaFree(k8_scale_), cudaFree(v8_scale_);
    k_cache_ = v_cache_ = k8_scale_ = v8_scale_ = nullptr;
    k8_ = v8_ = nullptr;
  }

  // Every device buffer goes straight into its place in layers_ (or a member), so that release()
  // frees what a throw part-way leaves behind: the constructor's catch calls it.
  void load_weights() {
    uint32_t seed = 1;
    auto linear = [&](const DeviceLinearSpec& l, DevLinear& d) {
      d.in = l.in;
      d.out = l.out;
      const int64_t n = l.in * l.out;
      if (s_.random) {
        if (int8()) {
          d.w_s8 = device_alloc<int8_t>(n);
          ops::fill_random(d.w_s8, n, seed++, stream_);
          d.w_scales = device_alloc<float>(l.out);
          ops::fill_random(d.w_scales, l.out, 1e-4f, 2e-4f, seed++, stream_);
        } else if (f32()) {
          d.w_f32 = device_alloc<float>(n);
          ops::fill_random(d.w_f32, n, 0.02f, 0.0f, seed++, stream_);
        } else {
          d.w_bf16 = device_alloc<__nv_bfloat16>(n);
          ops::fill_random(d.w_bf16, n, 0.02f, seed++, stream_);
        }
        if (int8() && s_.act == DeviceActQuant::kPerTensorStatic) {
          const float one = 0.05f;
          d.in_scale = upload(&one, 1);
        }
      } else if (int8()) {
        if (!l.w_s8 || !l.w_scales) throw std::runtime_error("INT8 engine needs int8 weights");
        d.w_s8 = upload(l.w_s8, n);
        d.w_scales = upload(l.w_scales, l.out);
        if (s_.act == DeviceActQuant::kPerTensorStatic) {
          if (!(l.in_scale > 0))
            throw std::runtime_error("static activation quantization needs input scales");
          d.in_scale = upload(&l.in_scale, 1);
        }
      } else if (f32()) {
        d.w_f32 = upload(l.weight, n);
      } else {
        d.w_bf16 = upload_bf16(l.weight, n);
      }
      if (l.bias && !s_.random) d.bias = upload(l.bias, l.out);
      weight_bytes_ += int8() ? n + l.out * 4 : (f32() ? 4 : 2) * n;
    };
    auto fused = [&](const std::vector<DeviceLinearSpec>& parts, bool qkv, DevLinear& d) {
      std::vector<float> weight, scales, bias;
      std::vector<int8_t> w_s8;
      const DeviceLinearSpec c = concat(parts, weight, w_s8, scales, bias);
      if (!qkv && glu()) interleave_gate_up(s_.ffn, c.in, weight, w_s8, scales, bias);
      linear(c, d);
      for (const auto& p : parts) {
        if (qkv && int8_kv() && s_.act == DeviceActQuant::kPerTensorStatic && !(p.out_scale > 0))
          throw std::runtime_error("--quant-bmm with static activations needs output scales");
        d.out_scales.push_back(p.out_scale);
      }
    };
    auto vec = [&](const float* p, int64_t n, float offset) {
      if (!s_.random) return upload(p, n);
      float* d = device_alloc<float>(n);
      ops::fill_random(d, n, offset == 0.0f ? 0.5f : 0.0f, offset, seed++, stream_);
      return d;
    };
    // A LayerNorm bias: the model's, none, or zeros for random weights.
    auto norm_bias = [&](const float* p) -> float* {
      if (!s_.layer_norm || (!s_.random && !p)) return nullptr;
      if (!s_.random) return upload(p, s_.hidden);
      float* d = device_alloc<float>(s_.hidden);
      SQ_CUDA_CHECK(cudaMemsetAsync(d, 0, s_.hidden * sizeof(float), stream_));
      return d;
    };
    const int64_t qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    const int64_t mlp_width = (s_.gated_mlp ? 2 : 1) * s_.ffn;
    layers_.reserve(static_cast<size_t>(s_.layers));
    for (int64_t l = 0; l < s_.layers; ++l) {
      const DeviceLayerSpec& ls = s_.random ? DeviceLayerSpec{} : s_.layer[l];
      DevLayer& d = layers_.emplace_back();
      d.attn_norm = vec(ls.attn_norm, s_.hidden, 1.0f);
      d.mlp_norm = vec(ls.mlp_norm, s_.hidden, 1.0f);
      d.attn_norm_b = norm_bias(ls.attn_norm_bias);
      d.mlp_norm_b = norm_bias(ls.mlp_norm_bias);
      if (s_.random) {
        linear({s_.hidden, qd + 2 * kvd}, d.qkv);
        d.qkv.out_scales = {0.05f, 0.05f, 0.05f};
        linear({qd, s_.hidden}, d.o);
        linear({s_.hidden, mlp_width}, d.gate_up);
        linear({s_.ffn, s_.hidden}, d.down);
      } else {
        fused({ls.q, ls.k, ls.v}, true, d.qkv);
        linear(ls.o, d.o);
        if (s_.gated_mlp) {
          fused({ls.gate, ls.up}, false, d.gate_up);
        } else {
          linear(ls.up, d.gate_up);
        }
        linear(ls.down, d.down);
      }
    }
    embed_ = vec(s_.embed, s_.vocab * s_.hidden, 0.0f);
    final_norm_ = vec(s_.final_norm, s_.hidden, 1.0f);
    final_norm_b_ = norm_bias(s_.final_norm_bias);
    if (s_.learned_positions)
      embed_pos_ =
          vec(s_.embed_positions, (s_.max_positions + s_.position_offset) * s_.hidden, 0.0f);
    const int64_t nh = s_.vocab * s_.hidden;
    if (f32_head()) {  // fp32 engines and evaluations keep the lm_head in fp32, as the CPU
      lm_head_f32_ = s_.random ? device_alloc<float>(nh) : upload(s_.lm_head, nh);
      if (s_.random) ops::fill_random(lm_head_f32_, nh, 0.02f, 0.0f, seed++, stream_);
    } else if (s_.random) {
      lm_head_ = device_alloc<__nv_bfloat16>(nh);
      ops::fill_random(lm_head_, nh, 0.02f, seed++, stream_);
    } else {
      lm_head_ = upload_bf16(s_.lm_head, nh);
    }
  }

  // The whole forward of m tokens as stream work: inputs from the pinned h_ids_/h_pos_, logits to
  // the pinned h_logits_. Nothing here may synchronize (it is also captured into a graph).
  void enqueue(int64_t m, bool last_only) {
    cudaStream_t st = stream_;
    SQ_CUDA_CHECK(cudaMemcpyAsync(pos_, h_pos_, sizeof(int), cudaMemcpyHostToDevice, st));
    SQ_CUDA_CHECK(cudaMemcpyAsync(ids_, h_ids_, m * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    const int64_t d = s_.hidden, qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    ops::embed(ids_, embed_, x_, m, d, st, embed_pos_, pos_, s_.position_offset);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
    norm_input(x_, nullptr, layers_[0].attn_norm, layers_[0].attn_norm_b, layers_[0].qkv, m, st);
    const std::vector<int64_t> widths = stat_widths();
    std::vector<int64_t> offsets(widths.size(), 0);
    for (size_t i = 1; i < widths.size(); ++i) offsets[i] = offsets[i - 1] + widths[i - 1];
    for (int64_t l = 0; l < s_.layers; ++l) {
      DevLayer& L = layers_[l];
      // The layer's fp32 keys and values: its slice of the cache, or (int8 cache) the scratch
      // that the dequantized, rotated prefix is written to.
      float* kc = int8_kv() ? k_cache_ : k_cache_ + l * capacity_ * kvd;
      float* vc = int8_kv() ? v_cache_ : v_cache_ + l * capacity_ * kvd;
      float* stat = stats_on_ ? stats_ + l * layer_stat_floats() : nullptr;
      // Column abs-maxima of the layer's tensor `slot` (stat_widths' order), when recording.
      auto record = [&](const float* y, int slot) {
        if (stat) ops::col_absmax(y, m, widths[slot], stat + offsets[slot], st);
      };
      record(xf_, 0);
      // Our INT8 GEMM writes v straight into the cache at prefill (RoPE then moves q and k
      // only); *h_pos_ is this forward's position, as prefill is never captured into a graph.
      const bool v_direct =
          fuse_ && int8() && !int8_kv() && m > kGemvMaxRows && (qd + kvd) % 64 == 0;
      linear(L.qkv, xf_, m, qkv_, st, v_direct ? vc + *h_pos_ * kvd : nullptr, qd + kvd);
      record(qkv_, 1);
      if (int8_kv()) {
        quant_bmm(L.qkv, l, m, st);
        ops::rope_qkv_to_cache(qkv_, q_, nullptr, nullptr, pos_, m, s_.heads, s_.kv_heads,
                               s_.head_dim, inv_freq_, st);
        ops::dequant_rope_kv(k8_ + l * capacity_ * kvd, k8_scale_ + l * capacity_,
                             v8_ + l * capacity_ * kvd, v8_scale_ + l * capacity_, pos_, m,
                             capacity_, s_.kv_heads, s_.head_dim, inv_freq_, kc, vc, st);
      } else {
        ops::rope_qkv_to_cache(qkv_, q_, kc, v_direct ? nullptr : vc, pos_, m, s_.heads,
                               s_.kv_heads, s_.head_dim, inv_freq_, st);
      }
      const bool fuse_quant = int8() && per_token();
      const bool quantized =
          ops::attention(q_, kc, vc, attn_, m, pos_, s_.heads, s_.kv_heads, s_.head_dim, scale,
                         attn_ws_, st, fuse_quant ? xq_ : nullptr, xs_);
      record(attn_, 2);
      if (!quantized) plain_input(attn_, m, qd, L.o, st);
      linear(L.o, attn_, m, o_, st);
      record(o_, 3);
      norm_input(x_, o_, L.mlp_norm, L.mlp_norm_b, L.gate_up, m, st);
      record(xf_, 4);
      // Per-token INT8 with the interleaved gate|up weight: SiLU · up in the GEMM's epilogue,
      // [m, ffn] into gu_ (the tiled kernel; decode-sized m takes the GEMV and the SiLU kernel).
      if (glu() && m > kGemvMaxRows) {
        GemmS8Epilogue ep{xs_, true, L.gate_up.w_scales, true, L.gate_up.bias};
        ep.row_absmax = amax_;
        gemm_s8_silu_f32(xq_, L.gate_up.w_s8, ep, gu_, m, L.gate_up.out, L.gate_up.in, st);
        quantize_rows_s8(gu_, amax_, m, s_.ffn, xq_, xs_, st);
      } else {
        linear(L.gate_up, xf_, m, gu_, st);
        record(gu_, 5);
        mlp_activation(m, L.down, record, st);
      }
      linear(L.down, xf_, m, o_, st);
      record(o_, 7);
      if (l + 1 == s_.layers) break;
      norm_input(x_, o_, layers_[l + 1].attn_norm, layers_[l + 1].attn_norm_b, layers_[l + 1].qkv,
                 m, st);
    }
    // The last residual add only on the rows whose logits are wanted.
    const int64_t rows = last_only ? 1 : m, r0 = m - rows;
    if (f32_head()) {
      if (s_.layer_norm) {
        ops::layer_norm_f32(x_ + r0 * d, o_ + r0 * d, final_norm_, final_norm_b_, s_.eps, rows, d,
                            xf_, st);
      } else {
        ops::rms_norm_f32(x_ + r0 * d, o_ + r0 * d, final_norm_, s_.eps, rows, d, xf_, st);
      }
      gemm_.run(xf_, lm_head_f32_, logits_, rows, s_.vocab, d, st);
      if (stats_on_) {
        float* lm = stats_ + s_.layers * layer_stat_floats();
        ops::col_absmax(xf_, rows, d, lm, st);
        ops::col_absmax(logits_, rows, s_.vocab, lm + d, st);
      }
    } else if (s_.layer_norm) {
      ops::layer_norm_bf16(x_ + r0 * d, o_ + r0 * d, final_norm_, final_norm_b_, s_.eps, rows, d,
                           xb_, st);
      gemm_.run(xb_, lm_head_, logits_, rows, s_.vocab, d, st);
    } else {
      ops::rms_norm_bf16(x_ + r0 * d, o_ + r0 * d, final_norm_, s_.eps, rows, d, xb_, st);
      gemm_.run(xb_, lm_head_, logits_, rows, s_.vocab, d, st);
    }
    SQ_CUDA_CHECK(cudaMemcpyAsync(h_logits_, logits_, rows * s_.vocab * sizeof(float),
                                  cudaMemcpyDeviceToHost, st));
  }

  // The down_proj input from the gate|up (or fc1) output in gu_: ReLU or SiLU · up into xf_
  // (recorded as statistic 6), xb_ or xq_/xs_. `record(y, slot)` is the forward's statistics hook.
  template <typename Record>
  void mlp_activation(int64_t m, const DevLinear& down, const Record& record, cudaStream_t st) {
    if (!s_.gated_mlp) {  // fc1 → ReLU → fc2
      if (int8() || f32()) {
        ops::relu(gu_, m * s_.ffn, xf_, nullptr, st);
        record(xf_, 6);
        if (int8()) plain_input(xf_, m, s_.ffn, down, st);
      } else {
        ops::relu(gu_, m * s_.ffn, nullptr, xb_, st);
      }
    } else if (int8() && per_token()) {
      silu_mul_quant_s8(gu_, m, s_.ffn, xq_, xs_, st, glu());
    } else if (int8() || f32()) {
      ops::silu_mul(gu_, m, s_.ffn, xf_, nullptr, st);
      record(xf_, 6);
      if (int8()) plain_input(xf_, m, s_.ffn, down, st);
    } else {
      ops::silu_mul(gu_, m, s_.ffn, nullptr, xb_, st);
    }
  }

  // The input of a Linear group that a norm opens (res: the residual add fused before it):
  // xf_ (fp32), xb_ (bf16) or xq_/xs_ (INT8). b: the LayerNorm bias of LayerNorm models.
  void norm_input(float* x, const float* res, const float* w, const float* b, const DevLinear& next,
                  int64_t m, cudaStream_t st) {
    const int64_t d = s_.hidden;
    if (s_.layer_norm) {  // LayerNorm, then (INT8) the quantization of its fp32 output
      if (int8() || f32()) {
        ops::layer_norm_f32(x, res, w, b, s_.eps, m, d, xf_, st);
        if (int8()) plain_input(xf_, m, d, next, st);
      } else {
        ops::layer_norm_bf16(x, res, w, b, s_.eps, m, d, xb_, st);
      }
    } else if (int8() && per_token()) {
      if (res) {
        add_rms_norm_quant_s8(x, res, w, s_.eps, m, d, xq_, xs_, st);
      } else {
        rms_norm_quant_s8(x, w, s_.eps, m, d, xq_, xs_, st);
      }
    } else if (int8() || f32()) {
      ops::rms_norm_f32(x, res, w, s_.eps, m, d, xf_, st);
      if (int8()) plain_input(xf_, m, d, next, st);
    } else {
      ops::rms_norm_bf16(x, res, w, s_.eps, m, d, xb_, st);
    }
  }

  // An fp32 Linear input [m, k] made ready for the Linear `next` (fp32 engines read it as is).
  void plain_input(const float* x, int64_t m, int64_t k, const DevLinear& next, cudaStream_t st) {
    if (f32()) return;
    if (!int8()) return ops::to_bf16(x, xb_, m * k, st);
    if (per_token()) return quantize_per_token_s8(x, m, k, xq_, xs_, st);
    const bool dynamic = s_.act == DeviceActQuant::kPerTensorDynamic;
    ops::quantize_per_tensor(x, m * k, dynamic ? slot_ : nullptr, dynamic ? nullptr : next.in_scale,
                             xq_, xs_, st);
  }

  // y = x · Wᵀ (+ bias). x: `xf` for fp32 engines; xb_ or xq_/xs_ otherwise. y2 (INT8, M > 16):
  // columns [y2_col, out) go there instead (GemmS8Epilogue::y2).
  void linear(const DevLinear& l, const float* xf, int64_t m, float* y, cudaStream_t st,
              float* y2 = nullptr, int64_t y2_col = 0) {
    if (int8()) {
      GemmS8Epilogue ep{xs_, per_token(), l.w_scales, true, l.bias};
      ep.y2 = y2, ep.y2_col = y2 ? y2_col : 0;
      gemm_s8_f32(xq_, l.w_s8, ep, y, m, l.out, l.in, st);
      return;
    }
    if (f32()) {
      gemm_.run(xf, l.w_f32, y, m, l.out, l.in, st);
    } else {
      gemm_.run(xb_, l.w_bf16, y, m, l.out, l.in, st);
    }
    if (l.bias) ops::add_bias(y, l.bias, m, l.out, st);
  }

  // --quant-bmm: q, k and v (each its own tensor) quantized before RoPE with the activation
  // granularity: q in place (quantize-dequantize), k and v into the layer's int8 cache rows at
  // *pos — the CPU INT8 path's int8 KV cache, which it reads back as q · scale.
  void quant_bmm(const DevLinear& qkv, int64_t l, int64_t m, cudaStream_t st) {
    const int64_t qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    const int64_t ld = qd + 2 * kvd;
    const ops::SegmentQuant mode =
        s_.act == DeviceActQuant::kPerToken           ? ops::SegmentQuant::kPerToken
        : s_.act == DeviceActQuant::kPerTensorDynamic ? ops::SegmentQuant::kPerTensorDynamic
                                                      : ops::SegmentQuant::kStatic;
    ops::fake_quant_segment(qkv_, m, ld, 0, qd, mode, qkv.out_scales[0], slot_, st);
    ops::quantize_segment_to_cache(qkv_, m, ld, qd, kvd, mode, qkv.out_scales[1], slot_, pos_,
                                   k8_ + l * capacity_ * kvd, k8_scale_ + l * capacity_, st);
    ops::quantize_segment_to_cache(qkv_, m, ld, qd + kvd, kvd, mode, qkv.out_scales[2], slot_, pos_,
                                   v8_ + l * capacity_ * kvd, v8_scale_ + l * capacity_, st);
  }

  void capture_step() {
    cudaGraph_t g = nullptr;
    SQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    bool ok = true;
    try {
      enqueue(1, true);
    } catch (...) {
      ok = false;
    }
    ok = cudaStreamEndCapture(stream_, &g) == cudaSuccess && ok;
    ok = ok && cudaGraphInstantiate(&graph_, g, 0) == cudaSuccess;
    if (g) cudaGraphDestroy(g);
    if (!ok) {  // run eagerly from now on
      cudaGetLastError();
      graph_ = nullptr;
      use_graphs_ = false;
    }
  }
  void drop_graph() {
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
  }

  // Statistics layout per layer: attn_in, qkv_out, o_in, o_out, mlp_in, gate_up_out, down_in,
  // down_out; then lm_in, lm_out.
  std::vector<int64_t> stat_widths() const {
    const int64_t qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    return {s_.hidden, qd + 2 * kvd, qd, s_.hidden, s_.hidden, (s_.gated_mlp ? 2 : 1) * s_.ffn,
            s_.ffn,    s_.hidden};
  }
  int64_t layer_stat_floats() const {
    int64_t n = 0;
    for (int64_t w : stat_widths()) n += w;
    return n;
  }
  int64_t stats_floats() const { return s_.layers * layer_stat_floats() + s_.hidden + s_.vocab; }

  void ensure_work(int64_t m) {
    if (m <= work_rows_) return;
    free_work();
    const int64_t d = s_.hidden, qd = s_.heads * s_.head_dim, wide = std::max(s_.ffn, qd);
    const int64_t kvd = s_.kv_heads * s_.head_dim;
    ids_ = device_alloc<int32_t>(m);
    x_ = device_alloc<float>(m * d);
    o_ = device_alloc<float>(m * d);
    q_ = device_alloc<float>(m * qd);
    qkv_ = device_alloc<float>(m * (qd + 2 * kvd));
    attn_ = device_alloc<float>(m * qd);
    gu_ = device_alloc<float>(m * (s_.gated_mlp ? 2 : 1) * s_.ffn);
    if (!int8() || !per_token() || s_.f32_lm_head || s_.layer_norm || !s_.gated_mlp)
      xf_ = device_alloc<float>(m * std::max(wide, d));
    if (s_.precision == DevicePrecision::kBf16 || !f32())
      xb_ = device_alloc<__nv_bfloat16>(m * std::max(wide, d));
    if (int8()) xq_ = device_alloc<int8_t>(m * std::max(wide, d));
    xs_ = device_alloc<float>(m);
    if (glu()) amax_ = device_alloc<float>(m);
    SQ_CUDA_CHECK(cudaMallocHost(&h_ids_, m * sizeof(int32_t)));
    work_rows_ = m;
  }
  // Logits for `rows` rows only: a long prompt asking for its last row needs one.
  void ensure_logits(int64_t rows) {
    if (rows <= logit_rows_) return;
    drop_graph();  // it holds the old buffers
    cudaFree(logits_), cudaFreeHost(h_logits_);
    logits_ = nullptr, h_logits_ = nullptr, logit_rows_ = 0;
    logits_ = device_alloc<float>(rows * s_.vocab);
    SQ_CUDA_CHECK(cudaMallocHost(&h_logits_, rows * s_.vocab * sizeof(float)));
    logit_rows_ = rows;
  }
  void free_work() {
    drop_graph();  // it holds the old buffers
    cudaFree(ids_), cudaFree(x_), cudaFree(o_), cudaFree(q_), cudaFree(qkv_), cudaFree(attn_);
    cudaFree(gu_), cudaFree(xf_), cudaFree(xb_), cudaFree(xq_), cudaFree(xs_), cudaFree(logits_);
    cudaFree(amax_);
    cudaFreeHost(h_ids_), cudaFreeHost(h_logits_);
    ids_ = nullptr, h_ids_ = nullptr, h_logits_ = nullptr, logit_rows_ = 0;
    x_ = o_ = q_ = qkv_ = attn_ = gu_ = xf_ = xs_ = logits_ = amax_ = nullptr;
    xb_ = nullptr, xq_ = nullptr;
    work_rows_ = 0;
  }

  DeviceModelSpec s_;
  cudaStream_t stream_{};
  LtGemm gemm_;
  std::vector<DevLayer> layers_;
  float *embed_ = nullptr, *final_norm_ = nullptr, *inv_freq_ = nullptr, *lm_head_f32_ = nullptr;
  float *final_norm_b_ = nullptr, *embed_pos_ = nullptr;  // LayerNorm bias, learned positions
  __nv_bfloat16* lm_head_ = nullptr;
  float *k_cache_ = nullptr, *v_cache_ = nullptr;
  int8_t *k8_ = nullptr, *v8_ = nullptr;  // --quant-bmm int8 cache
  float *k8_scale_ = nullptr, *v8_scale_ = nullptr;
  int64_t capacity_ = 0, size_ = 0, weight_bytes_ = 0, work_rows_ = 0, logit_rows_ = 0;
  int32_t *ids_ = nullptr, *h_ids_ = nullptr;
  int *pos_ = nullptr, *h_pos_ = nullptr;  // the first position of the tokens in flight
  float *x_ = nullptr, *o_ = nullptr, *q_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr,
        *gu_ = nullptr, *xf_ = nullptr, *xs_ = nullptr, *logits_ = nullptr, *h_logits_ = nullptr;
  float* amax_ = nullptr;  // per-row abs-max of the SiLU · up GEMM output (glu())
  // SQ_CUDA_GEMM_FUSION=0: no SiLU · up or v-to-cache in the INT8 GEMM epilogue (A/B runs).
  const bool fuse_ = [] {
    const char* e = std::getenv("SQ_CUDA_GEMM_FUSION");
    return !(e && std::string(e) == "0");
  }();
  __nv_bfloat16* xb_ = nullptr;
  int8_t* xq_ = nullptr;
  float *slot_ = nullptr, *attn_ws_ = nullptr;  // abs-max scratch; split attention partials
  float* stats_ = nullptr;
  bool stats_on_ = false;
  cudaGraphExec_t graph_ = nullptr;
  bool use_graphs_ = true;
  int64_t decode_steps_ = 0;
};

}  // namespace

std::unique_ptr<DeviceEngine> make_engine(const DeviceModelSpec& spec) {
  if (!spec.random && static_cast<int64_t>(spec.layer.size()) != spec.layers)
    throw std::runtime_error("internal error: DeviceModelSpec has the wrong number of layers");
  return std::make_unique<CudaEngine>(spec);
}

}  // namespace sq::cuda
