// CUDA DeviceEngine (engine.h): the decoder forward of src/model on the GPU for pre-norm RMSNorm
// decoders with RoPE and a gated SiLU MLP. Linears run as cuBLASLt bf16 GEMMs (fp32 out) or as
// our INT8 kernels. q/k/v and gate/up are each one GEMM over weights concatenated at load (one
// launch, and enough tiles to fill the GPU at prefill sizes); every element of the fused output
// is computed exactly as by its own Linear. The residual add is fused with the next norm, the norm
// with the per-token quantization, SiLU·up with the down_proj input quantization, RoPE with the
// KV-cache write. Everything outside the GEMMs (residual, norms, RoPE, attention, KV cache) is
// fp32. Decode steps (one token) replay a CUDA graph captured once: the position lives in device
// memory, so the same graph serves every step.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/engine.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/norm_quant_cuda.h"

namespace sq::cuda {
namespace {

#define SQ_CUBLAS_CHECK(call)                                                \
  do {                                                                       \
    const cublasStatus_t st_ = (call);                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                        \
      throw std::runtime_error(std::string(#call) + " failed with status " + \
                               std::to_string(static_cast<int>(st_)));       \
  } while (0)

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
  int8_t* w_s8 = nullptr;
  float* w_scales = nullptr;
  float* bias = nullptr;
};

struct DevLayer {
  float *attn_norm = nullptr, *mlp_norm = nullptr;
  DevLinear qkv, o, gate_up, down;  // qkv: rows [q | k | v]; gate_up: rows [gate | up]
};

// Host-side concatenation of Linears that share an input, along the output dimension. A missing
// bias becomes zeros when a sibling has one (x + 0 is exact).
DeviceLinearSpec concat(const std::vector<DeviceLinearSpec>& parts, std::vector<float>& weight,
                        std::vector<int8_t>& w_s8, std::vector<float>& scales,
                        std::vector<float>& bias) {
  DeviceLinearSpec c{parts.front().in, 0};
  bool any_bias = false;
  for (const auto& p : parts) {
    if (p.in != c.in) throw std::runtime_error("internal error: fused Linears differ in width");
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

// cuBLASLt bf16 GEMM y[m, n] (fp32) = x[m, k] (bf16) · W[n, k]ᵀ (bf16), plans cached per shape.
class Bf16Gemm {
 public:
  Bf16Gemm() {
    SQ_CUBLAS_CHECK(cublasLtCreate(&h_));
    ws_ = device_alloc<char>(kWorkspace);
  }
  ~Bf16Gemm() {
    for (auto& [key, p] : plans_) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.la);
      cublasLtMatrixLayoutDestroy(p.lb);
      cublasLtMatrixLayoutDestroy(p.lc);
    }
    cudaFree(ws_);
    cublasLtDestroy(h_);
  }
  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, int64_t m, int64_t n,
           int64_t k, cudaStream_t s) {
    const Plan& p = plan(m, n, k);
    const float one = 1.0f, zero = 0.0f;
    SQ_CUBLAS_CHECK(cublasLtMatmul(h_, p.op, &one, w, p.la, x, p.lb, &zero, y, p.lc, y, p.lc,
                                   &p.algo, ws_, kWorkspace, s));
  }

 private:
  static constexpr size_t kWorkspace = 32u << 20;
  struct Plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
  };
  const Plan& plan(int64_t m, int64_t n, int64_t k) {
    const auto key = std::make_tuple(m, n, k);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan p{};
    SQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    SQ_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
    SQ_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn));
    // Column-major view: Cᵀ[n, m] = op_T(W as [k, n]) · x as [k, m].
    SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, k, n, k));
    SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, k, m, k));
    SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lc, CUDA_R_32F, n, m, n));
    cublasLtMatmulPreference_t pref;
    SQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = kWorkspace;
    SQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(h_, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw std::runtime_error("cuBLASLt has no bf16 GEMM for this shape");
    p.algo = res.algo;
    return plans_.emplace(key, p).first->second;
  }

  cublasLtHandle_t h_{};
  char* ws_ = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Plan> plans_;
};

class CudaEngine : public DeviceEngine {
 public:
  explicit CudaEngine(const DeviceModelSpec& spec) : s_(spec) {
    if (!ops::attention_supports(s_.head_dim))
      throw std::runtime_error("--device cuda: head_dim " + std::to_string(s_.head_dim) +
                               " is not supported yet (16, 32, 64, 80, 96, 128, 256 or a multiple "
                               "of 4 up to 128)");
    if (s_.hidden > 8192)
      throw std::runtime_error("--device cuda: hidden sizes above 8192 are not supported yet");
    SQ_CUDA_CHECK(cudaStreamCreate(&stream_));
    uint32_t seed = 1;
    auto linear = [&](const DeviceLinearSpec& l) {
      DevLinear d;
      d.in = l.in;
      d.out = l.out;
      const int64_t n = l.in * l.out;
      if (s_.random) {
        if (s_.int8) {
          d.w_s8 = device_alloc<int8_t>(n);
          ops::fill_random(d.w_s8, n, seed++, stream_);
          d.w_scales = device_alloc<float>(l.out);
          ops::fill_random(d.w_scales, l.out, 1e-4f, 2e-4f, seed++, stream_);
        } else {
          d.w_bf16 = device_alloc<__nv_bfloat16>(n);
          ops::fill_random(d.w_bf16, n, 0.02f, seed++, stream_);
        }
        weight_bytes_ += s_.int8 ? n + l.out * 4 : 2 * n;
        return d;
      }
      if (s_.int8) {
        if (!l.w_s8 || !l.w_scales) throw std::runtime_error("INT8 engine needs int8 weights");
        d.w_s8 = upload(l.w_s8, n);
        d.w_scales = upload(l.w_scales, l.out);
        weight_bytes_ += n + l.out * 4;
      } else {
        d.w_bf16 = upload_bf16(l.weight, n);
        weight_bytes_ += 2 * n;
      }
      if (l.bias) d.bias = upload(l.bias, l.out);
      return d;
    };
    auto vec = [&](const float* p, int64_t n, float offset) {
      if (!s_.random) return upload(p, n);
      float* d = device_alloc<float>(n);
      ops::fill_random(d, n, offset == 0.0f ? 0.5f : 0.0f, offset, seed++, stream_);
      return d;
    };
    auto fused = [&](const std::vector<DeviceLinearSpec>& parts) {
      std::vector<float> weight, scales, bias;
      std::vector<int8_t> w_s8;
      return linear(concat(parts, weight, w_s8, scales, bias));
    };
    const int64_t qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    for (int64_t l = 0; l < s_.layers; ++l) {
      const DeviceLayerSpec& ls = s_.random ? DeviceLayerSpec{} : s_.layer[l];
      DevLayer d;
      d.attn_norm = vec(ls.attn_norm, s_.hidden, 1.0f);
      d.mlp_norm = vec(ls.mlp_norm, s_.hidden, 1.0f);
      if (s_.random) {
        d.qkv = linear({s_.hidden, qd + 2 * kvd});
        d.o = linear({qd, s_.hidden});
        d.gate_up = linear({s_.hidden, 2 * s_.ffn});
        d.down = linear({s_.ffn, s_.hidden});
      } else {
        d.qkv = fused({ls.q, ls.k, ls.v});
        d.o = linear(ls.o);
        d.gate_up = fused({ls.gate, ls.up});
        d.down = linear(ls.down);
      }
      layers_.push_back(d);
    }
    embed_ = vec(s_.embed, s_.vocab * s_.hidden, 0.0f);
    final_norm_ = vec(s_.final_norm, s_.hidden, 1.0f);
    if (s_.random) {
      lm_head_ = device_alloc<__nv_bfloat16>(s_.vocab * s_.hidden);
      ops::fill_random(lm_head_, s_.vocab * s_.hidden, 0.02f, seed++, stream_);
    } else {
      lm_head_ = upload_bf16(s_.lm_head, s_.vocab * s_.hidden);
    }
    // As the CPU engine (and HF): inv_freq = 1 / theta^(2i/d) in fp32.
    std::vector<float> inv(static_cast<size_t>(s_.head_dim / 2));
    for (int64_t i = 0; i < s_.head_dim / 2; ++i)
      inv[i] = 1.0f / std::pow(static_cast<float>(s_.rope_theta),
                               static_cast<float>(2 * i) / static_cast<float>(s_.head_dim));
    inv_freq_ = upload(inv.data(), static_cast<int64_t>(inv.size()));
    pos_ = device_alloc<int>(1);
    attn_ws_ = device_alloc<float>(ops::attention_workspace_floats(s_.heads, s_.head_dim));
    SQ_CUDA_CHECK(cudaMallocHost(&h_pos_, sizeof(int)));
    const char* env = std::getenv("SQ_CUDA_GRAPHS");
    use_graphs_ = !(env && std::string(env) == "0");
    SQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  ~CudaEngine() override {
    auto free_linear = [](DevLinear& l) {
      cudaFree(l.w_bf16), cudaFree(l.w_s8), cudaFree(l.w_scales), cudaFree(l.bias);
    };
    for (auto& l : layers_) {
      cudaFree(l.attn_norm), cudaFree(l.mlp_norm);
      for (DevLinear* x : {&l.qkv, &l.o, &l.gate_up, &l.down}) free_linear(*x);
    }
    cudaFree(embed_), cudaFree(final_norm_), cudaFree(lm_head_), cudaFree(inv_freq_);
    cudaFree(k_cache_), cudaFree(v_cache_), cudaFree(pos_), cudaFreeHost(h_pos_);
    cudaFree(attn_ws_);
    free_work();
    cudaStreamDestroy(stream_);
  }

  void reset(int64_t capacity) override {
    if (capacity > s_.max_positions)
      throw std::runtime_error("context of " + std::to_string(capacity) +
                               " tokens exceeds the model's positions");
    if (capacity > capacity_) {
      cudaFree(k_cache_), cudaFree(v_cache_);
      const int64_t n = s_.layers * capacity * s_.kv_heads * s_.head_dim;
      k_cache_ = device_alloc<float>(n);
      v_cache_ = device_alloc<float>(n);
      capacity_ = capacity;
      drop_graph();  // it holds the old cache pointers
    }
    size_ = 0;
  }

  int64_t cache_size() const override { return size_; }
  int64_t linear_weight_bytes() const override { return weight_bytes_; }
  std::string describe() const override {
    return std::string(s_.int8 ? "INT8 channel-token" : "bf16") + " Linears on the GPU" +
           (use_graphs_ ? ", decode as a CUDA graph" : "");
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
    std::copy(tokens, tokens + m, h_ids_);
    *h_pos_ = static_cast<int>(size_);
    // One-token steps replay a graph; the first runs eagerly (plans and one-time kernel set-up
    // happen outside capture), the second captures.
    const bool step = m == 1 && last_only && use_graphs_;
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
  // The whole forward of m tokens as stream work: inputs from the pinned h_ids_/h_pos_, logits to
  // the pinned h_logits_. Nothing here may synchronize (it is also captured into a graph).
  void enqueue(int64_t m, bool last_only) {
    cudaStream_t st = stream_;
    SQ_CUDA_CHECK(cudaMemcpyAsync(pos_, h_pos_, sizeof(int), cudaMemcpyHostToDevice, st));
    SQ_CUDA_CHECK(cudaMemcpyAsync(ids_, h_ids_, m * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    const int64_t d = s_.hidden, qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    ops::embed(ids_, embed_, x_, m, d, st);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
    // The norm opening layer 0's attention; later ones are fused with the residual add before.
    if (s_.int8) {
      rms_norm_quant_s8(x_, layers_[0].attn_norm, s_.eps, m, d, xq_, xs_, st);
    } else {
      ops::rms_norm_bf16(x_, nullptr, layers_[0].attn_norm, s_.eps, m, d, xb_, st);
    }
    for (int64_t l = 0; l < s_.layers; ++l) {
      DevLayer& L = layers_[l];
      float* kc = k_cache_ + l * capacity_ * kvd;
      float* vc = v_cache_ + l * capacity_ * kvd;
      linear(L.qkv, m, qkv_, st);
      ops::rope_qkv_to_cache(qkv_, q_, kc, vc, pos_, m, s_.heads, s_.kv_heads, s_.head_dim,
                             inv_freq_, st);
      ops::attention(q_, kc, vc, attn_, m, pos_, s_.heads, s_.kv_heads, s_.head_dim, scale,
                     attn_ws_, st);
      if (s_.int8) {
        quantize_per_token_s8(attn_, m, qd, xq_, xs_, st);
      } else {
        ops::to_bf16(attn_, xb_, m * qd, st);
      }
      linear(L.o, m, o_, st);
      if (s_.int8) {
        add_rms_norm_quant_s8(x_, o_, L.mlp_norm, s_.eps, m, d, xq_, xs_, st);
      } else {
        ops::rms_norm_bf16(x_, o_, L.mlp_norm, s_.eps, m, d, xb_, st);
      }
      linear(L.gate_up, m, gu_, st);
      if (s_.int8) {
        silu_mul_quant_s8(gu_, m, s_.ffn, xq_, xs_, st);
      } else {
        ops::silu_mul(gu_, m, s_.ffn, nullptr, xb_, st);
      }
      linear(L.down, m, o_, st);
      if (l + 1 == s_.layers) break;
      if (s_.int8) {
        add_rms_norm_quant_s8(x_, o_, layers_[l + 1].attn_norm, s_.eps, m, d, xq_, xs_, st);
      } else {
        ops::rms_norm_bf16(x_, o_, layers_[l + 1].attn_norm, s_.eps, m, d, xb_, st);
      }
    }
    // The last residual add only on the rows whose logits are wanted.
    const int64_t rows = last_only ? 1 : m, r0 = m - rows;
    ops::rms_norm_bf16(x_ + r0 * d, o_ + r0 * d, final_norm_, s_.eps, rows, d, xb_, st);
    gemm_.run(xb_, lm_head_, logits_, rows, s_.vocab, d, st);
    SQ_CUDA_CHECK(cudaMemcpyAsync(h_logits_, logits_, rows * s_.vocab * sizeof(float),
                                  cudaMemcpyDeviceToHost, st));
  }

  void capture_step() {
    cudaGraph_t g = nullptr;
    SQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue(1, true);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      use_graphs_ = false;  // run eagerly from now on
      return;
    }
    SQ_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    const cudaError_t e = cudaGraphInstantiate(&graph_, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
      cudaGetLastError();
      graph_ = nullptr;
      use_graphs_ = false;
    }
  }
  void drop_graph() {
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
  }

  // Input: xb_ (bf16 engines) or the per-token quantized xq_/xs_ (INT8 engines).
  void linear(const DevLinear& l, int64_t m, float* y, cudaStream_t st) {
    if (s_.int8) {
      GemmS8Epilogue ep{xs_, true, l.w_scales, true, l.bias};
      gemm_s8_f32(xq_, l.w_s8, ep, y, m, l.out, l.in, st);
      return;
    }
    gemm_.run(xb_, l.w_bf16, y, m, l.out, l.in, st);
    if (l.bias) ops::add_bias(y, l.bias, m, l.out, st);
  }

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
    gu_ = device_alloc<float>(m * 2 * s_.ffn);
    xb_ = device_alloc<__nv_bfloat16>(m * std::max(wide, d));
    xq_ = device_alloc<int8_t>(m * std::max(wide, d));
    xs_ = device_alloc<float>(m);
    logits_ = device_alloc<float>(m * s_.vocab);
    SQ_CUDA_CHECK(cudaMallocHost(&h_ids_, m * sizeof(int32_t)));
    SQ_CUDA_CHECK(cudaMallocHost(&h_logits_, m * s_.vocab * sizeof(float)));
    work_rows_ = m;
  }
  void free_work() {
    drop_graph();  // it holds the old buffers
    cudaFree(ids_), cudaFree(x_), cudaFree(o_), cudaFree(q_), cudaFree(qkv_), cudaFree(attn_);
    cudaFree(gu_), cudaFree(xb_), cudaFree(xq_), cudaFree(xs_), cudaFree(logits_);
    cudaFreeHost(h_ids_), cudaFreeHost(h_logits_);
    ids_ = nullptr, h_ids_ = nullptr, h_logits_ = nullptr;
    x_ = o_ = q_ = qkv_ = attn_ = gu_ = xs_ = logits_ = nullptr;
    xb_ = nullptr, xq_ = nullptr;
    work_rows_ = 0;
  }

  DeviceModelSpec s_;
  cudaStream_t stream_{};
  Bf16Gemm gemm_;
  std::vector<DevLayer> layers_;
  float *embed_ = nullptr, *final_norm_ = nullptr, *inv_freq_ = nullptr;
  __nv_bfloat16* lm_head_ = nullptr;
  float *k_cache_ = nullptr, *v_cache_ = nullptr;
  int64_t capacity_ = 0, size_ = 0, weight_bytes_ = 0, work_rows_ = 0;
  int32_t *ids_ = nullptr, *h_ids_ = nullptr;
  int *pos_ = nullptr, *h_pos_ = nullptr;  // the first position of the tokens in flight
  float *x_ = nullptr, *o_ = nullptr, *q_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr,
        *gu_ = nullptr, *xs_ = nullptr, *logits_ = nullptr, *h_logits_ = nullptr;
  float* attn_ws_ = nullptr;
  cudaGraphExec_t graph_ = nullptr;
  bool use_graphs_ = true;
  int64_t decode_steps_ = 0;
  __nv_bfloat16* xb_ = nullptr;
  int8_t* xq_ = nullptr;
};

}  // namespace

std::unique_ptr<DeviceEngine> make_engine(const DeviceModelSpec& spec) {
  if (!spec.random && static_cast<int64_t>(spec.layer.size()) != spec.layers)
    throw std::runtime_error("internal error: DeviceModelSpec has the wrong number of layers");
  return std::make_unique<CudaEngine>(spec);
}

}  // namespace sq::cuda
