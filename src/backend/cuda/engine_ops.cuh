// Element-wise and attention kernels of the CUDA engine (engine.cu), fp32 throughout as the CPU
// engine computes: embedding gather (plus learned positions), RMSNorm or LayerNorm to bf16 (the
// bf16 Linears' input, optionally after the residual add), RoPE (HF rotate_half, fused with the
// KV-cache write; an inv_freq of zeros makes it an exact copy, which learned-position models use),
// causal GQA attention over the fp32 KV cache with an online softmax (attention.cu), SiLU·up, bias
// adds, fp32 → bf16.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace sq::cuda::ops {

// pos_table (learned positions, nullable): x += pos_table row *pos + t + offset for token t.
void embed(const int32_t* ids, const float* table, float* x, int64_t m, int64_t d, cudaStream_t s,
           const float* pos_table = nullptr, const int* pos = nullptr, int64_t offset = 0);
// res (nullable): x += res first, written back to x.
void rms_norm_bf16(float* x, const float* res, const float* w, float eps, int64_t m, int64_t d,
                   __nv_bfloat16* out, cudaStream_t s);
void rms_norm_f32(float* x, const float* res, const float* w, float eps, int64_t m, int64_t d,
                  float* out, cudaStream_t s);
// LayerNorm (OPT; b nullable) with the same residual convention as the RMSNorms above.
void layer_norm_bf16(float* x, const float* res, const float* w, const float* b, float eps,
                     int64_t m, int64_t d, __nv_bfloat16* out, cudaStream_t s);
void layer_norm_f32(float* x, const float* res, const float* w, const float* b, float eps,
                    int64_t m, int64_t d, float* out, cudaStream_t s);
// max(x, 0) of n values into fp32 and/or bf16 (OPT's fc1 → fc2).
void relu(const float* x, int64_t n, float* out_f32, __nv_bfloat16* out_bf16, cudaStream_t s);
// qkv [m, (heads + 2·kv_heads)·head_dim] → q_out [m, heads·head_dim] rotated; k rotated and v into
// the layer's caches ([positions, kv_heads·head_dim]) at rows *pos .. *pos + m (k_cache null:
// queries only; v_cache null: the values are already there).
void rope_qkv_to_cache(const float* qkv, float* q_out, float* k_cache, float* v_cache,
                       const int* pos, int64_t m, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       const float* inv_freq, cudaStream_t s);
// The int8 KV cache of --quant-bmm ([positions, kv_heads·head_dim] int8 + one scale per
// position) → fp32 keys rotated at their positions and values, for positions [0, *pos + m).
void dequant_rope_kv(const int8_t* k8, const float* k_scales, const int8_t* v8,
                     const float* v_scales, const int* pos, int64_t m, int64_t capacity,
                     int64_t kv_heads, int64_t head_dim, const float* inv_freq, float* k_out,
                     float* v_out, cudaStream_t s);

// Causal GQA attention (attention.cu) of query rows at positions *pos .. *pos + m (a device value,
// so that a captured graph replays for any position) over the layer's caches [positions,
// kv_heads·head_dim]. ws: attention_workspace_floats() floats of scratch for decode-sized m,
// zero-filled once before the first call (it holds counters that each call leaves at zero).
int64_t attention_workspace_floats(int64_t heads, int64_t head_dim);
bool attention_supports(int64_t head_dim);
// Which prefill kernel runs: the tensor-core one where it has the head dim (kAuto), or the fp32
// CUDA-core ones (kFp32Cores, also SQ_CUDA_ATTN=fp32). For tests and comparisons.
enum class AttentionPrefill { kAuto, kFp32Cores };
void set_attention_prefill_override(AttentionPrefill k);
// q8/q8_scales (nullable): also quantize the output per token into them, as
// quantize_per_token_s8 would; done only for decode-sized m, and the return value says whether.
bool attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
               float* ws, cudaStream_t s, int8_t* q8 = nullptr, float* q8_scales = nullptr);
// gu [m, 2·ffn] = [gate | up] per row → silu(gate) · up, [m, ffn], fp32 and/or bf16.
void silu_mul(const float* gu, int64_t m, int64_t ffn, float* out_f32, __nv_bfloat16* out_bf16,
              cudaStream_t s);
void add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t s);
void to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t s);
// Deterministic pseudo-random fills for speed runs (values in [-amp, amp]).
void fill_random(__nv_bfloat16* p, int64_t n, float amp, uint32_t seed, cudaStream_t s);
void fill_random(float* p, int64_t n, float amp, float offset, uint32_t seed, cudaStream_t s);
void fill_random(int8_t* p, int64_t n, uint32_t seed, cudaStream_t s);

}  // namespace sq::cuda::ops
