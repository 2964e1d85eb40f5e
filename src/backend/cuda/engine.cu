// CUDA DeviceEngine (engine.h): the decoder forward of src/model on the GPU for pre-norm RMSNorm
// decoders with RoPE and a gated SiLU MLP. Linears run as cuBLASLt bf16 GEMMs (fp32 out) or as
// our INT8 kernels: the norm before q/k/v and gate/up is fused with the per-token quantization and
// shared by those Linears; o_proj and down_proj inputs are quantized per token alone; the W8A8
// epilogue writes fp32. Everything else (residual, norms, RoPE, attention, KV cache) is fp32.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
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
  DevLinear q, k, v, o, gate, up, down;
};

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
    if (s_.head_dim > 256 || s_.head_dim % 2 != 0)
      throw std::runtime_error("--device cuda: head_dim must be even and at most 256");
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
    for (int64_t l = 0; l < s_.layers; ++l) {
      const DeviceLayerSpec& ls = s_.random ? DeviceLayerSpec{} : s_.layer[l];
      const DeviceLinearSpec q{s_.hidden, s_.heads * s_.head_dim},
          kv{s_.hidden, s_.kv_heads * s_.head_dim}, o{s_.heads * s_.head_dim, s_.hidden},
          gu{s_.hidden, s_.ffn}, dn{s_.ffn, s_.hidden};
      DevLayer d;
      d.attn_norm = vec(ls.attn_norm, s_.hidden, 1.0f);
      d.mlp_norm = vec(ls.mlp_norm, s_.hidden, 1.0f);
      d.q = linear(s_.random ? q : ls.q);
      d.k = linear(s_.random ? kv : ls.k);
      d.v = linear(s_.random ? kv : ls.v);
      d.o = linear(s_.random ? o : ls.o);
      d.gate = linear(s_.random ? gu : ls.gate);
      d.up = linear(s_.random ? gu : ls.up);
      d.down = linear(s_.random ? dn : ls.down);
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
    SQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  ~CudaEngine() override {
    auto free_linear = [](DevLinear& l) {
      cudaFree(l.w_bf16), cudaFree(l.w_s8), cudaFree(l.w_scales), cudaFree(l.bias);
    };
    for (auto& l : layers_) {
      cudaFree(l.attn_norm), cudaFree(l.mlp_norm);
      for (DevLinear* x : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) free_linear(*x);
    }
    cudaFree(embed_), cudaFree(final_norm_), cudaFree(lm_head_), cudaFree(inv_freq_);
    cudaFree(k_cache_), cudaFree(v_cache_);
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
    }
    size_ = 0;
  }

  int64_t cache_size() const override { return size_; }
  int64_t linear_weight_bytes() const override { return weight_bytes_; }
  std::string describe() const override {
    return std::string(s_.int8 ? "INT8 channel-token" : "bf16") + " Linears on the GPU";
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
    cudaStream_t st = stream_;
    SQ_CUDA_CHECK(cudaMemcpyAsync(ids_, tokens, m * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    const int64_t d = s_.hidden, qd = s_.heads * s_.head_dim, kvd = s_.kv_heads * s_.head_dim;
    const int64_t pos0 = size_;
    ops::embed(ids_, embed_, x_, m, d, st);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
    for (int64_t l = 0; l < s_.layers; ++l) {
      DevLayer& L = layers_[l];
      float* kc = k_cache_ + (l * capacity_ + pos0) * kvd;
      float* vc = v_cache_ + (l * capacity_ + pos0) * kvd;
      if (s_.int8) {
        rms_norm_quant_s8(x_, L.attn_norm, s_.eps, m, d, xq_, xs_, st);
        int8_linear(L.q, m, q_, st);
        int8_linear(L.k, m, kc, st);
        int8_linear(L.v, m, vc, st);
      } else {
        ops::rms_norm_bf16(x_, L.attn_norm, s_.eps, m, d, xb_, st);
        bf16_linear(L.q, xb_, m, q_, st);
        bf16_linear(L.k, xb_, m, kc, st);
        bf16_linear(L.v, xb_, m, vc, st);
      }
      ops::rope(q_, m, s_.heads, s_.head_dim, pos0, inv_freq_, st);
      ops::rope(kc, m, s_.kv_heads, s_.head_dim, pos0, inv_freq_, st);
      ops::attention(q_, k_cache_ + l * capacity_ * kvd, v_cache_ + l * capacity_ * kvd, attn_, m,
                     pos0, s_.heads, s_.kv_heads, s_.head_dim, scale, st);
      if (s_.int8) {
        quantize_per_token_s8(attn_, m, qd, xq_, xs_, st);
        int8_linear(L.o, m, o_, st);
      } else {
        ops::to_bf16(attn_, xb_, m * qd, st);
        bf16_linear(L.o, xb_, m, o_, st);
      }
      ops::add(x_, o_, m * d, st);
      if (s_.int8) {
        rms_norm_quant_s8(x_, L.mlp_norm, s_.eps, m, d, xq_, xs_, st);
        int8_linear(L.gate, m, g_, st);
        int8_linear(L.up, m, u_, st);
        ops::silu_mul(g_, u_, g_, nullptr, m * s_.ffn, st);
        quantize_per_token_s8(g_, m, s_.ffn, xq_, xs_, st);
        int8_linear(L.down, m, o_, st);
      } else {
        ops::rms_norm_bf16(x_, L.mlp_norm, s_.eps, m, d, xb_, st);
        bf16_linear(L.gate, xb_, m, g_, st);
        bf16_linear(L.up, xb_, m, u_, st);
        ops::silu_mul(g_, u_, nullptr, xb_, m * s_.ffn, st);
        bf16_linear(L.down, xb_, m, o_, st);
      }
      ops::add(x_, o_, m * d, st);
    }
    size_ += m;
    const int64_t rows = last_only ? 1 : m;
    ops::rms_norm_bf16(x_ + (m - rows) * d, final_norm_, s_.eps, rows, d, xb_, st);
    gemm_.run(xb_, lm_head_, logits_, rows, s_.vocab, d, st);
    logits.resize(static_cast<size_t>(rows * s_.vocab));
    SQ_CUDA_CHECK(cudaMemcpyAsync(logits.data(), logits_, logits.size() * sizeof(float),
                                  cudaMemcpyDeviceToHost, st));
    SQ_CUDA_CHECK(cudaStreamSynchronize(st));
  }

 private:
  void bf16_linear(const DevLinear& l, const __nv_bfloat16* x, int64_t m, float* y,
                   cudaStream_t st) {
    gemm_.run(x, l.w_bf16, y, m, l.out, l.in, st);
    if (l.bias) ops::add_bias(y, l.bias, m, l.out, st);
  }
  // Input: the per-token quantized activations in xq_/xs_.
  void int8_linear(const DevLinear& l, int64_t m, float* y, cudaStream_t st) {
    GemmS8Epilogue ep{xs_, true, l.w_scales, true, l.bias};
    gemm_s8_f32(xq_, l.w_s8, ep, y, m, l.out, l.in, st);
  }

  void ensure_work(int64_t m) {
    if (m <= work_rows_) return;
    free_work();
    const int64_t d = s_.hidden, qd = s_.heads * s_.head_dim, wide = std::max(s_.ffn, qd);
    ids_ = device_alloc<int32_t>(m);
    x_ = device_alloc<float>(m * d);
    o_ = device_alloc<float>(m * d);
    q_ = device_alloc<float>(m * qd);
    attn_ = device_alloc<float>(m * qd);
    g_ = device_alloc<float>(m * s_.ffn);
    u_ = device_alloc<float>(m * s_.ffn);
    xb_ = device_alloc<__nv_bfloat16>(m * std::max(wide, d));
    xq_ = device_alloc<int8_t>(m * std::max(wide, d));
    xs_ = device_alloc<float>(m);
    logits_ = device_alloc<float>(m * s_.vocab);
    work_rows_ = m;
  }
  void free_work() {
    cudaFree(ids_), cudaFree(x_), cudaFree(o_), cudaFree(q_), cudaFree(attn_), cudaFree(g_);
    cudaFree(u_), cudaFree(xb_), cudaFree(xq_), cudaFree(xs_), cudaFree(logits_);
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
  int32_t* ids_ = nullptr;
  float *x_ = nullptr, *o_ = nullptr, *q_ = nullptr, *attn_ = nullptr, *g_ = nullptr, *u_ = nullptr,
        *xs_ = nullptr, *logits_ = nullptr;
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
