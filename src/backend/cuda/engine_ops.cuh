// Element-wise and attention kernels of the CUDA engine (engine.cu), fp32 throughout as the CPU
// engine computes: embedding gather, RMSNorm to bf16 (the bf16 Linears' input), RoPE (HF
// rotate_half), causal GQA attention over the fp32 KV cache with an online softmax (one warp per
// query row and head), SiLU·up, residual and bias adds, fp32 → bf16.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace sq::cuda::ops {

void embed(const int32_t* ids, const float* table, float* x, int64_t m, int64_t d, cudaStream_t s);
void rms_norm_bf16(const float* x, const float* w, float eps, int64_t m, int64_t d,
                   __nv_bfloat16* out, cudaStream_t s);
void rms_norm_f32(const float* x, const float* w, float eps, int64_t m, int64_t d, float* out,
                  cudaStream_t s);
void rope(float* x, int64_t m, int64_t heads, int64_t head_dim, int64_t pos0, const float* inv_freq,
          cudaStream_t s);
void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
               cudaStream_t s);
void silu_mul(const float* gate, const float* up, float* out_f32, __nv_bfloat16* out_bf16,
              int64_t n, cudaStream_t s);
void add(float* x, const float* y, int64_t n, cudaStream_t s);
void add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t s);
void to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t s);
// Deterministic pseudo-random fills for speed runs (values in [-amp, amp]).
void fill_random(__nv_bfloat16* p, int64_t n, float amp, uint32_t seed, cudaStream_t s);
void fill_random(float* p, int64_t n, float amp, float offset, uint32_t seed, cudaStream_t s);
void fill_random(int8_t* p, int64_t n, uint32_t seed, cudaStream_t s);

}  // namespace sq::cuda::ops
