// NUMERICS §1's int8 rules as device functions, shared by every CUDA kernel that quantizes:
// scale = max(absmax, 1e-5) / 127 and q = clamp(rint(x / scale), ±127), both with true
// (correctly rounded) divisions so that results equal the CPU's bit for bit; and SiLU(g)·u in the
// CPU engine's order, which the fp32/bf16 and the quantizing SiLU kernels share.
#pragma once

#include <cuda_runtime.h>

namespace sq::cuda {

__device__ __forceinline__ float scale_from_absmax(float a) {
  return __fdiv_rn(fmaxf(a, 1e-5f), 127.0f);
}

// The int8 level of x as a float in [-127, 127].
__device__ __forceinline__ float quant_level(float x, float scale) {
  return fminf(fmaxf(rintf(__fdiv_rn(x, scale)), -127.0f), 127.0f);
}

// g / (1 + e^-g) · u, each step rounded to fp32 (no FMA), as the CPU engine computes it.
__device__ __forceinline__ float silu_mul(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

}  // namespace sq::cuda
