// Kernels of quant_ops.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernel_launch.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/quant_math.cuh"
#include "backend/cuda/quant_ops.cuh"

namespace sq::cuda::ops {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void atomic_max_nonneg(float* p, float v) {
  atomicMax(reinterpret_cast<int*>(p), __float_as_int(v));
}

__device__ float block_max(float v) {
  __shared__ float red[kThreads / 32];
  return sq::cuda::block_max<kThreads>(v, red);
}

// Grid-stride loops: this thread's first item and the step between its items.
__device__ __forceinline__ int64_t grid_first() {
  return blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// |x| of rows [0, m) × columns [col0, col0 + width) of a matrix with leading dimension ld: blocks
// along y take rows, along x columns (an index split by division made the pass compute-bound).
__global__ void absmax_k(const float* x, int64_t m, int64_t ld, int64_t col0, int64_t width,
                         float* slot) {
  float a = 0.0f;
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y)
    for (int64_t j = grid_first(); j < width; j += grid_stride())
      a = fmaxf(a, fabsf(x[r * ld + col0 + j]));
  a = block_max(a);
  if (threadIdx.x == 0) atomic_max_nonneg(slot, a);
}

// |x| of n contiguous values, x 16-byte aligned: float4 loads, the n % 4 tail one by one.
__global__ void absmax_flat_k(const float* x, int64_t n, float* slot) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float a = 0.0f;
  for (int64_t i = grid_first(); i < n / 4; i += grid_stride()) {
    const float4 v = x4[i];
    a = fmaxf(fmaxf(a, fmaxf(fabsf(v.x), fabsf(v.y))), fmaxf(fabsf(v.z), fabsf(v.w)));
  }
  for (int64_t i = n / 4 * 4 + grid_first(); i < n; i += grid_stride()) a = fmaxf(a, fabsf(x[i]));
  a = block_max(a);
  if (threadIdx.x == 0) atomic_max_nonneg(slot, a);
}

// kVec4 (x 16-byte and q 4-byte aligned): float4 in, char4 out, the n % 4 tail one by one.
template <bool kVec4>
__global__ void quantize_k(const float* x, int64_t n, const float* absmax, const float* fixed,
                           int8_t* q, float* scale_out) {
  pdl_trigger();  // the decode GEMV that reads our output may launch and stream weights
  const float scale = fixed ? *fixed : scale_from_absmax(*absmax);
  if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = scale;
  auto level = [&](float v) { return static_cast<signed char>(quant_level(v, scale)); };
  int64_t done = 0;
  if constexpr (kVec4) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    char4* q4 = reinterpret_cast<char4*>(q);
    for (int64_t i = grid_first(); i < n / 4; i += grid_stride()) {
      const float4 v = x4[i];
      q4[i] = make_char4(level(v.x), level(v.y), level(v.z), level(v.w));
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + grid_first(); i < n; i += grid_stride()) q[i] = level(x[i]);
}

// One block per row: the row's segment quantized with its own scale, then dequantized.
__global__ void fake_quant_rows_k(float* y, int64_t ld, int64_t col0, int width) {
  float* r = y + blockIdx.x * ld + col0;
  float a = 0.0f;
  for (int j = threadIdx.x; j < width; j += kThreads) a = fmaxf(a, fabsf(r[j]));
  const float scale = scale_from_absmax(block_max(a));
  for (int j = threadIdx.x; j < width; j += kThreads) r[j] = quant_level(r[j], scale) * scale;
}

// Blocks along y take rows, along x columns, as absmax_k.
__global__ void fake_quant_fixed_k(float* y, int64_t m, int64_t ld, int64_t col0, int64_t width,
                                   const float* absmax, float fixed) {
  const float scale = absmax ? scale_from_absmax(*absmax) : fixed;
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y)
    for (int64_t j = grid_first(); j < width; j += grid_stride()) {
      float& v = y[r * ld + col0 + j];
      v = quant_level(v, scale) * scale;
    }
}

// Block per row t: the segment of row t → cache row *pos + t. A per-tensor scale comes from
// absmax (dynamic) or `fixed` (static); per token (both null) from the row itself.
__global__ void quantize_to_cache_k(const float* y, int64_t ld, int64_t col0, int width,
                                    const float* absmax, float fixed, bool per_token,
                                    const int* pos, int8_t* q, float* scales) {
  const float* r = y + blockIdx.x * ld + col0;
  float scale;
  if (per_token) {
    float a = 0.0f;
    for (int j = threadIdx.x; j < width; j += kThreads) a = fmaxf(a, fabsf(r[j]));
    scale = scale_from_absmax(block_max(a));
  } else {
    scale = absmax ? scale_from_absmax(*absmax) : fixed;
  }
  const int64_t row = *pos + static_cast<int64_t>(blockIdx.x);
  if (threadIdx.x == 0) scales[row] = scale;
  for (int j = threadIdx.x; j < width; j += kThreads)
    q[row * width + j] = static_cast<int8_t>(quant_level(r[j], scale));
}

// Block (column chunk of 32, row slab): each thread walks rows of one column.
__global__ void col_absmax_k(const float* x, int64_t m, int64_t n, float* acc) {
  const int64_t j = blockIdx.x * 32 + threadIdx.x;
  if (j >= n) return;
  float a = 0.0f;
  for (int64_t i = blockIdx.y * blockDim.y + threadIdx.y; i < m; i += gridDim.y * blockDim.y)
    a = fmaxf(a, fabsf(x[i * n + j]));
  atomic_max_nonneg(acc + j, a);
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 132 * 16));
}

// Blocks for a rows × width segment walk: enough along x to cover a row, rows along y, about as
// many in all as blocks_for(m · width).
dim3 segment_grid(int64_t m, int64_t width) {
  const unsigned x = blocks_for(width);
  const int64_t y = std::max<int64_t>(1, std::min<int64_t>(m, 132 * 16 / x));
  return dim3(x, static_cast<unsigned>(std::min<int64_t>(y, 65535)));
}

}  // namespace

void quantize_per_tensor(const float* x, int64_t n, float* absmax_slot, const float* static_scale,
                         int8_t* q, float* scale_out, cudaStream_t s) {
  if (n <= 0) return;
  if (!static_scale) {
    SQ_CUDA_CHECK(cudaMemsetAsync(absmax_slot, 0, sizeof(float), s));
    if (aligned(x, 16)) {
      absmax_flat_k<<<blocks_for((n + 3) / 4), kThreads, 0, s>>>(x, n, absmax_slot);
    } else {
      absmax_k<<<segment_grid(1, n), kThreads, 0, s>>>(x, 1, n, 0, n, absmax_slot);
    }
    SQ_CUDA_CHECK(cudaGetLastError());
  }
  const float* dyn = static_scale ? nullptr : absmax_slot;
  if (aligned(x, 16) && aligned(q, 4)) {
    quantize_k<true>
        <<<blocks_for((n + 3) / 4), kThreads, 0, s>>>(x, n, dyn, static_scale, q, scale_out);
  } else {
    quantize_k<false><<<blocks_for(n), kThreads, 0, s>>>(x, n, dyn, static_scale, q, scale_out);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

void fake_quant_segment(float* y, int64_t m, int64_t ld, int64_t col0, int64_t width,
                        SegmentQuant mode, float static_scale, float* absmax_slot, cudaStream_t s) {
  if (m <= 0 || width <= 0) return;
  if (mode == SegmentQuant::kPerToken) {
    fake_quant_rows_k<<<static_cast<unsigned>(m), kThreads, 0, s>>>(y, ld, col0,
                                                                    static_cast<int>(width));
  } else {
    if (mode == SegmentQuant::kPerTensorDynamic) {
      SQ_CUDA_CHECK(cudaMemsetAsync(absmax_slot, 0, sizeof(float), s));
      absmax_k<<<segment_grid(m, width), kThreads, 0, s>>>(y, m, ld, col0, width, absmax_slot);
      SQ_CUDA_CHECK(cudaGetLastError());
    }
    fake_quant_fixed_k<<<segment_grid(m, width), kThreads, 0, s>>>(
        y, m, ld, col0, width, mode == SegmentQuant::kPerTensorDynamic ? absmax_slot : nullptr,
        static_scale);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

void quantize_segment_to_cache(const float* y, int64_t m, int64_t ld, int64_t col0, int64_t width,
                               SegmentQuant mode, float static_scale, float* absmax_slot,
                               const int* pos, int8_t* q, float* scales, cudaStream_t s) {
  if (m <= 0 || width <= 0) return;
  if (mode == SegmentQuant::kPerTensorDynamic) {
    SQ_CUDA_CHECK(cudaMemsetAsync(absmax_slot, 0, sizeof(float), s));
    absmax_k<<<segment_grid(m, width), kThreads, 0, s>>>(y, m, ld, col0, width, absmax_slot);
    SQ_CUDA_CHECK(cudaGetLastError());
  }
  quantize_to_cache_k<<<static_cast<unsigned>(m), kThreads, 0, s>>>(
      y, ld, col0, static_cast<int>(width),
      mode == SegmentQuant::kPerTensorDynamic ? absmax_slot : nullptr, static_scale,
      mode == SegmentQuant::kPerToken, pos, q, scales);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void col_absmax(const float* x, int64_t m, int64_t n, float* acc, cudaStream_t s) {
  if (m <= 0 || n <= 0) return;
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((n + 31) / 32),
                  static_cast<unsigned>(std::min<int64_t>((m + 7) / 8, 64)));
  col_absmax_k<<<grid, block, 0, s>>>(x, m, n, acc);
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sq::cuda::ops
