// Block-wide reductions for the one-block-per-row kernels (norms, per-token quantization): a
// shuffle tree within each warp, then the warps' partials summed (or maxed) in warp order by every
// thread, so all threads get the same value and the order is fixed for a given block size.
// `red` is Threads / 32 floats of shared memory; it may be reused by consecutive calls (each call
// waits for the previous one's readers first).
#pragma once

#include <cuda_runtime.h>

namespace sq::cuda {

template <int Threads>
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  __syncthreads();  // red may still be read from a previous reduction
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < Threads / 32; ++i) s += red[i];  // same order in every thread
  return s;
}

template <int Threads>
__device__ __forceinline__ float block_max(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < Threads / 32; ++i) s = fmaxf(s, red[i]);
  return s;
}

}  // namespace sq::cuda
