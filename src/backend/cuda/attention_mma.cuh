// Prefill attention on the tensor cores (used by ops::attention, attention.cu): fp32 accuracy
// from TF32 matrix instructions by the 3xTF32 split (x = big + small exactly, big rounded to TF32;
// a·b ≈ big·big + big·small + small·big, the dropped small·small term and the MMA's truncation
// of small each below 2⁻²¹ relative), so the engine's fp32 attention keeps its numerics while
// the products run on mma.sync m16n8k8.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace sq::cuda::ops {

// Head dims this kernel has: 16, 32, 64, 80, 96, 128.
bool attention_mma_supports(int64_t head_dim);
// Causal GQA attention of m query rows at positions *pos.. (layout as ops::attention).
void attention_mma(const float* q, const float* k_cache, const float* v_cache, float* out,
                   int64_t m, const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim,
                   float scale, cudaStream_t s);

}  // namespace sq::cuda::ops
