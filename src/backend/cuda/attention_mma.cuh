// Prefill attention on the tensor cores (used by ops::attention, attention.cu) at fp32-class
// accuracy: every operand is split into two FP16 parts (x = hi + lo, 22 significant bits, as in
// a 3xTF32 split) and each product is hi·hi + hi·lo + lo·hi on mma.sync m16n8k16 with fp32
// accumulation, the dropped lo·lo term below 2⁻²² relative. FP16's range bounds |q·scale·log2 e|, |k|
// and |v| by 65504 (normalised attention inputs stay far below).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace sq::cuda::ops {

// Head dims this kernel has (16, 32, 64, 80, 96, 128) whose blocks fit the current device's
// shared memory (200 KB at 128; the others fall back to the fp32-core kernels).
bool attention_mma_supports(int64_t head_dim);
// Causal GQA attention of m query rows at positions *pos.. (layout as ops::attention).
void attention_mma(const float* q, const float* k_cache, const float* v_cache, float* out,
                   int64_t m, const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim,
                   float scale, cudaStream_t s);

}  // namespace sq::cuda::ops
