// Fused RMSNorm + per-token int8 quantization on the GPU (norm_quant_cuda.h): one 256-thread
// block per row. The row is read once into registers/shared memory, its sum of squares and the
// abs-max of the normalized values are block reductions, and the int8 row and its scale are
// written directly: the normalized activations never round-trip through device memory.
#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/norm_quant_cuda.h"

namespace sq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPerThread = 32;  // rows up to 8192 wide stay in registers

__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

__device__ float block_sum(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // red may still be read from a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < kThreads / 32; ++i) s += red[i];  // same order in every thread
  return s;
}

__device__ float block_max(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < kThreads / 32; ++i) s = fmaxf(s, red[i]);
  return s;
}

template <typename T, bool kNorm>
__global__ void __launch_bounds__(kThreads)
    rms_norm_quant_kernel(const T* __restrict__ x, const float* __restrict__ w, float eps, int d,
                          int8_t* __restrict__ q, float* __restrict__ scales) {
  __shared__ float red[kThreads / 32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  float v[kMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) {
    const int j = threadIdx.x + i * kThreads;
    v[i] = j < d ? load_f32(xr, j) : 0.0f;
    ss = __fadd_rn(ss, __fmul_rn(v[i], v[i]));  // no FMA, as the CPU
  }
  float amax = 0.0f;
  if constexpr (kNorm) {
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(__fdiv_rn(ss, static_cast<float>(d)) + eps);
#pragma unroll
    for (int i = 0; i < kMaxPerThread; ++i) {
      const int j = threadIdx.x + i * kThreads;
      v[i] = j < d ? __fmul_rn(w[j], __fmul_rn(v[i], inv)) : 0.0f;  // HF order: w · (x · inv)
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) amax = fmaxf(amax, fabsf(v[i]));
  amax = block_max(amax, red);
  // NUMERICS §1: scale = max(absmax, 1e-5) / 127, q = clamp(rint(y / scale)) with a division.
  const float scale = __fdiv_rn(fmaxf(amax, 1e-5f), 127.0f);
  if (threadIdx.x == 0) scales[row] = scale;
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) {
    const int j = threadIdx.x + i * kThreads;
    if (j < d) {
      const float r = fminf(fmaxf(rintf(__fdiv_rn(v[i], scale)), -127.0f), 127.0f);
      q[row * d + j] = static_cast<int8_t>(r);
    }
  }
}

// Rows of any width without a norm: two passes over the row (abs-max, then quantize); the
// second reads it from L1/L2.
__global__ void __launch_bounds__(kThreads)
    quantize_rows_kernel(const float* __restrict__ x, int d, int8_t* __restrict__ q,
                         float* __restrict__ scales) {
  __shared__ float red[kThreads / 32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  float amax = 0.0f;
  for (int j = threadIdx.x; j < d; j += kThreads) amax = fmaxf(amax, fabsf(xr[j]));
  amax = block_max(amax, red);
  const float scale = __fdiv_rn(fmaxf(amax, 1e-5f), 127.0f);
  if (threadIdx.x == 0) scales[row] = scale;
  for (int j = threadIdx.x; j < d; j += kThreads) {
    const float r = fminf(fmaxf(rintf(__fdiv_rn(xr[j], scale)), -127.0f), 127.0f);
    q[row * d + j] = static_cast<int8_t>(r);
  }
}

template <typename T, bool kNorm>
void launch(const T* x, const float* w, float eps, int64_t m, int64_t d, int8_t* q, float* scales,
            cudaStream_t stream) {
  if (d <= 0 || d > kThreads * kMaxPerThread)
    throw std::runtime_error("rms_norm_quant: hidden size " + std::to_string(d) +
                             " outside [1, 8192]");
  if (m <= 0) return;
  rms_norm_quant_kernel<T, kNorm><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(
      x, w, eps, static_cast<int>(d), q, scales);
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void rms_norm_quant_s8(const float* x, const float* w, float eps, int64_t m, int64_t d, int8_t* q,
                       float* scales, cudaStream_t stream) {
  launch<float, true>(x, w, eps, m, d, q, scales, stream);
}

void quantize_per_token_s8(const float* x, int64_t m, int64_t d, int8_t* q, float* scales,
                           cudaStream_t stream) {
  if (d <= 0) throw std::runtime_error("quantize_per_token_s8: empty rows");
  if (m <= 0) return;
  quantize_rows_kernel<<<static_cast<unsigned>(m), kThreads, 0, stream>>>(x, static_cast<int>(d), q,
                                                                          scales);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_quant_s8(const uint16_t* x_bf16, const float* w, float eps, int64_t m, int64_t d,
                       int8_t* q, float* scales, cudaStream_t stream) {
  launch<__nv_bfloat16, true>(reinterpret_cast<const __nv_bfloat16*>(x_bf16), w, eps, m, d, q,
                              scales, stream);
}

}  // namespace sq::cuda
