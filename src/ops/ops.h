// Device-agnostic signatures of the float ops of the forward pass. Row-major throughout; GEMM dims
// are named M (tokens), N (output features), K (input features). The CPU implementation lives in
// src/backend/cpu; each op there is written to match PyTorch's fp32 semantics (accumulation in
// fp32, softmax with max subtraction) so the engine agrees with Hugging Face transformers to ~1e-5.
#pragma once

#include <cstdint>

namespace sq::ops {

// y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N] when non-null). OpenBLAS sgemm (sgemv when M = 1).
void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                int64_t k);

// y[m,:] = x[m,:] / sqrt(mean(x[m,:]²) + eps) · weight — as HF LlamaRMSNorm (fp32).
void rms_norm(const float* x, const float* weight, float eps, float* y, int64_t m, int64_t d);
// y[m,:] = (x - mean) / sqrt(var + eps) · weight + bias — as torch.nn.LayerNorm (biased var).
void layer_norm(const float* x, const float* weight, const float* bias, float eps, float* y,
                int64_t m, int64_t d);

// The norms fused with the per-token int8 quantization of their output, for INT8 Linears: y is
// exactly rms_norm / layer_norm's, q and scales exactly quantize_s8_per_token(y) (NUMERICS §1);
// each row is quantized while it is still in L1 instead of in a second pass over y.
void rms_norm_q8(const float* x, const float* weight, float eps, float* y, int8_t* q, float* scales,
                 int64_t m, int64_t d);
void layer_norm_q8(const float* x, const float* weight, const float* bias, float eps, float* y,
                   int8_t* q, float* scales, int64_t m, int64_t d);

// Rotary embedding, HF rotate_half convention, in place on x[M, n_heads·head_dim] for positions
// pos0 .. pos0+M-1. inv_freq has head_dim/2 entries.
void rope(float* x, int64_t m, int64_t n_heads, int64_t head_dim, int64_t pos0,
          const float* inv_freq);

// Causal attention of M new queries at positions pos0.., over keys/values 0 .. pos0+M-1 held in
// k/v caches laid out [pos, n_kv_heads·head_dim]. q is [M, n_heads·head_dim]; out likewise.
// Grouped-query: query head h reads kv head h / (n_heads / n_kv_heads).
void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale);

void silu_mul(const float* gate, const float* up, float* out, int64_t n);  // silu(gate) · up
void relu_inplace(float* x, int64_t n);
void gelu_inplace(float* x, int64_t n);  // exact erf GELU
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace sq::ops
