// Fused RMSNorm + per-token int8 quantization on the GPU (norm_quant_cuda.h): one block per row
// (256 threads, 1024 for decode-sized batches). The row is read once into registers/shared memory,
// its sum of squares and the abs-max of the normalized values are block reductions, and the int8
// row and its scale are written directly: the normalized activations never round-trip through
// device memory.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/kernel_launch.cuh"
#include "backend/cuda/norm_quant_cuda.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/quant_math.cuh"

namespace sq::cuda {
namespace {

// Rows are one block each. Few rows (decode) get 1024-thread blocks: a 256-thread block walking
// a 4096-wide row alone was latency-bound (12 µs for one RMSNorm row on the H200).
constexpr int kThreads = 256, kWideThreads = 1024, kWideMaxRows = 64;
constexpr int kMaxWidth = 8192;  // normed rows stay in registers

__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

// res (fp32 x only, nullable): the residual add x += res first, written back to x.
// kVec4 (fp32 x, d % 4 == 0): thread t owns elements 4t..4t+3 of each 4·Threads-wide stripe and
// moves them with 16-byte loads and stores (4-byte int8 stores); one element per thread per stripe
// (kVec4 false) keeps bf16 inputs and odd widths. The sum of squares then adds a thread's elements
// in a different order; like the block tree, that is fp32 summation order, not a formula change.
template <typename T, bool kNorm, int Threads, bool kVec4>
__global__ void __launch_bounds__(Threads)
    rms_norm_quant_kernel(T* __restrict__ x, const float* __restrict__ res,
                          const float* __restrict__ w, float eps, int d, int8_t* __restrict__ q,
                          float* __restrict__ scales) {
  static_assert(!kVec4 || sizeof(T) == 4);
  pdl_trigger();  // the decode GEMV that reads our output may launch and stream weights
  pdl_wait();     // launched with PDL too: the previous kernel wrote our input
  constexpr int kMaxPerThread = kMaxWidth / Threads;
  constexpr int kV = kVec4 ? 4 : 1;
  __shared__ float red[Threads / 32];
  const int64_t row = blockIdx.x;
  T* xr = x + row * d;
  // Element of slot i: stripe i / kV, lane element i % kV.
  auto elem = [&](int i) { return (threadIdx.x + (i / kV) * Threads) * kV + i % kV; };
  float v[kMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int i0 = 0; i0 < kMaxPerThread; i0 += kV) {
    const int j0 = elem(i0);
    if constexpr (kVec4) {
      float4 a = j0 < d ? *reinterpret_cast<const float4*>(xr + j0) : make_float4(0, 0, 0, 0);
      if (res && j0 < d) {
        const float4 r = *reinterpret_cast<const float4*>(res + row * d + j0);
        a = make_float4(__fadd_rn(a.x, r.x), __fadd_rn(a.y, r.y), __fadd_rn(a.z, r.z),
                        __fadd_rn(a.w, r.w));
        *reinterpret_cast<float4*>(xr + j0) = a;
      }
      v[i0] = a.x, v[i0 + 1] = a.y, v[i0 + 2] = a.z, v[i0 + 3] = a.w;
    } else {
      v[i0] = j0 < d ? load_f32(xr, j0) : 0.0f;
      if constexpr (sizeof(T) == 4) {
        if (res && j0 < d) xr[j0] = v[i0] = __fadd_rn(v[i0], res[row * d + j0]);
      }
    }
#pragma unroll
    for (int e = 0; e < kV; ++e) ss = __fadd_rn(ss, __fmul_rn(v[i0 + e], v[i0 + e]));  // no FMA
  }
  float amax = 0.0f;
  if constexpr (kNorm) {
    ss = block_sum<Threads>(ss, red);
    const float inv = 1.0f / sqrtf(__fdiv_rn(ss, static_cast<float>(d)) + eps);
#pragma unroll
    for (int i = 0; i < kMaxPerThread; ++i) {
      const int j = elem(i);
      v[i] = j < d ? __fmul_rn(w[j], __fmul_rn(v[i], inv)) : 0.0f;  // HF order: w · (x · inv)
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) amax = fmaxf(amax, fabsf(v[i]));
  amax = block_max<Threads>(amax, red);
  // NUMERICS §1: scale = max(absmax, 1e-5) / 127, q = clamp(rint(y / scale)) with a division.
  const float scale = scale_from_absmax(amax);
  if (threadIdx.x == 0) scales[row] = scale;
#pragma unroll
  for (int i0 = 0; i0 < kMaxPerThread; i0 += kV) {
    const int j0 = elem(i0);
    if (j0 >= d) continue;
    if constexpr (kVec4) {
      *reinterpret_cast<char4*>(q + row * d + j0) =
          make_char4(static_cast<signed char>(quant_level(v[i0], scale)),
                     static_cast<signed char>(quant_level(v[i0 + 1], scale)),
                     static_cast<signed char>(quant_level(v[i0 + 2], scale)),
                     static_cast<signed char>(quant_level(v[i0 + 3], scale)));
    } else {
      q[row * d + j0] = static_cast<int8_t>(quant_level(v[i0], scale));
    }
  }
}

// Where a quantized row's values come from: SiLU(gate) · up of a fused gate|up GEMM output,
// [gate (ffn) | up (ffn)] or interleaved in blocks of kGluBlock (gemm_s8_cuda.h: the layout the
// INT8 engine stores gate|up weights in), or a plain fp32 row (the activation as is).
enum class RowSrc { kGateUp, kInterleaved, kPlain };

template <RowSrc S>
struct Row {
  const float* p;                                                     // the row's start
  int ffn;                                                            // output width
  static constexpr int64_t kStrideMul = S == RowSrc::kPlain ? 1 : 2;  // input floats per output
  __device__ Row(const float* base, int64_t row, int width)
      : p(base + row * kStrideMul * width), ffn(width) {}
  // Offsets of output j's gate (or plain value) and up, in floats.
  static constexpr int kBlock = static_cast<int>(kGluBlock);
  __device__ __forceinline__ int gate(int j) const {
    return S == RowSrc::kInterleaved ? (j / kBlock) * 2 * kBlock + j % kBlock : j;
  }
  __device__ __forceinline__ int up(int j) const {
    return S == RowSrc::kInterleaved ? gate(j) + kBlock : j + ffn;
  }
  __device__ __forceinline__ float at(int j) const {
    if constexpr (S == RowSrc::kPlain) return p[j];
    return silu_mul(p[gate(j)], p[up(j)]);
  }
  // Outputs 4·j4 .. 4·j4 + 3 (ffn % 4 == 0 and, interleaved, kGluBlock % 4 == 0).
  __device__ __forceinline__ float4 at4(int j4) const {
    const float4* p4 = reinterpret_cast<const float4*>(p);
    if constexpr (S == RowSrc::kPlain) return p4[j4];
    const float4 gv = p4[gate(4 * j4) / 4], uv = p4[up(4 * j4) / 4];
    return make_float4(silu_mul(gv.x, uv.x), silu_mul(gv.y, uv.y), silu_mul(gv.z, uv.z),
                       silu_mul(gv.w, uv.w));
  }
};

// Rows quantized per token, one block each: SiLU(gate) · up of a fused gate|up row, or a plain
// row. The values are staged in shared memory between the abs-max and the quantize pass (kStage),
// or recomputed for rows too wide for it; SiLU · up never goes to device memory. Same arithmetic
// as ops::silu_mul. kVec4 (ffn % 4 == 0): 16-byte loads, 4-byte stores of the int8 levels. With
// scalar loads and byte stores the 2048-row prefill call ran at ~1.5 TB/s (130 µs per Llama-2-7B
// layer on the H200).
template <int Threads, bool kStage, bool kVec4, RowSrc S>
__global__ void __launch_bounds__(Threads)
    quant_rows_kernel(const float* __restrict__ src, int ffn, int8_t* __restrict__ q,
                      float* __restrict__ scales) {
  pdl_trigger();  // the decode GEMV that reads our output may launch and stream weights
  pdl_wait();     // launched with PDL too: the previous kernel wrote our input
  extern __shared__ float4 ys4[];  // float4: 16-byte aligned for the vector path
  float* ys = reinterpret_cast<float*>(ys4);
  __shared__ float red[Threads / 32];
  const int64_t row = blockIdx.x;
  const Row<S> in(src, row, ffn);
  float amax = 0.0f;
  if constexpr (kVec4) {
#pragma unroll 2
    for (int j = threadIdx.x; j < ffn / 4; j += Threads) {
      const float4 v = in.at4(j);
      if constexpr (kStage) ys4[j] = v;
      amax = fmaxf(fmaxf(amax, fmaxf(fabsf(v.x), fabsf(v.y))), fmaxf(fabsf(v.z), fabsf(v.w)));
    }
    amax = block_max<Threads>(amax, red);  // its barriers also publish ys
    const float scale = scale_from_absmax(amax);
    if (threadIdx.x == 0) scales[row] = scale;
    char4* q4 = reinterpret_cast<char4*>(q + row * ffn);
    for (int j = threadIdx.x; j < ffn / 4; j += Threads) {
      const float4 v = kStage ? ys4[j] : in.at4(j);
      q4[j] = make_char4(static_cast<signed char>(quant_level(v.x, scale)),
                         static_cast<signed char>(quant_level(v.y, scale)),
                         static_cast<signed char>(quant_level(v.z, scale)),
                         static_cast<signed char>(quant_level(v.w, scale)));
    }
  } else {
    // Unrolled so that several rows' loads are in flight per thread: at decode one block walks
    // the whole row, and one load at a time left it latency-bound (11 µs for 11008 on the H200).
#pragma unroll 4
    for (int j = threadIdx.x; j < ffn; j += Threads) {
      const float v = in.at(j);
      if constexpr (kStage) ys[j] = v;
      amax = fmaxf(amax, fabsf(v));
    }
    amax = block_max<Threads>(amax, red);  // its barriers also publish ys
    const float scale = scale_from_absmax(amax);
    if (threadIdx.x == 0) scales[row] = scale;
    for (int j = threadIdx.x; j < ffn; j += Threads) {
      const float v = kStage ? ys[j] : in.at(j);
      const float r = quant_level(v, scale);
      q[row * ffn + j] = static_cast<int8_t>(r);
    }
  }
}

// Rows whose abs-max is already known (row_absmax, e.g. from the GEMM epilogue that wrote them):
// a pure stream, blocks along x over a row's columns, along y over rows. kVec4: d % 4 == 0 and
// 16-byte aligned x (4-byte aligned q).
template <bool kVec4>
__global__ void __launch_bounds__(kThreads)
    quantize_known_absmax_kernel(const float* __restrict__ x, const float* __restrict__ row_absmax,
                                 int64_t m, int d, int8_t* __restrict__ q,
                                 float* __restrict__ scales) {
  pdl_trigger();
  pdl_wait();
  const int j = blockIdx.x * kThreads + threadIdx.x;
  for (int64_t row = blockIdx.y; row < m; row += gridDim.y) {
    const float scale = scale_from_absmax(row_absmax[row]);
    if (blockIdx.x == 0 && threadIdx.x == 0) scales[row] = scale;
    auto level = [&](float v) { return static_cast<signed char>(quant_level(v, scale)); };
    if constexpr (kVec4) {
      if (j < d / 4) {
        const float4 v = reinterpret_cast<const float4*>(x + row * d)[j];
        reinterpret_cast<char4*>(q + row * d)[j] =
            make_char4(level(v.x), level(v.y), level(v.z), level(v.w));
      }
    } else if (j < d) {
      q[row * d + j] = level(x[row * d + j]);
    }
  }
}

// Decode rows on Hopper: a cluster of kClusterCtas CTAs per row, each over a contiguous slice held
// in registers, the slices' abs-maxima exchanged through distributed shared memory. One block
// walking an 11008-wide row took 9 µs on the H200, mostly load latency; abs-max is
// order-independent, so the result is bit-identical to quant_rows_kernel's.
constexpr int kClusterCtas = 8, kClusterThreads = 256, kClusterPer = 16;
constexpr int kClusterMaxFfn = kClusterCtas * kClusterThreads * kClusterPer;
constexpr int kClusterMaxRows = 4;

template <RowSrc S>
__global__ void __launch_bounds__(kClusterThreads)
    silu_mul_quant_cluster_kernel(const float* __restrict__ gu, int ffn, int8_t* __restrict__ q,
                                  float* __restrict__ scales) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  pdl_trigger();  // the decode GEMV that reads our output may launch and stream weights
  pdl_wait();     // launched with PDL too: the previous kernel wrote our input
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  __shared__ float red[kClusterThreads / 32];
  __shared__ float cta_max;
  const int rank = static_cast<int>(cluster.block_rank());
  const int64_t row = blockIdx.y;
  const int slice = (ffn + kClusterCtas - 1) / kClusterCtas;
  const int j0 = rank * slice, j1 = min(ffn, j0 + slice);
  const Row<S> in(gu, row, ffn);
  float v[kClusterPer];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kClusterPer; ++i) {
    const int j = j0 + threadIdx.x + i * kClusterThreads;
    float y = 0.0f;
    if (j < j1) y = in.at(j);
    v[i] = y;
    amax = fmaxf(amax, fabsf(y));
  }
  amax = block_max<kClusterThreads>(amax, red);
  if (threadIdx.x == 0) cta_max = amax;
  cluster.sync();
  for (int r = 0; r < kClusterCtas; ++r) amax = fmaxf(amax, *cluster.map_shared_rank(&cta_max, r));
  const float scale = scale_from_absmax(amax);
  if (rank == 0 && threadIdx.x == 0) scales[row] = scale;
#pragma unroll
  for (int i = 0; i < kClusterPer; ++i) {
    const int j = j0 + threadIdx.x + i * kClusterThreads;
    if (j < j1) {
      const float r = quant_level(v[i], scale);
      q[row * ffn + j] = static_cast<int8_t>(r);
    }
  }
  cluster.sync();  // no CTA may exit while another still reads its cta_max
#else
  __trap();  // launched only where sm_90 code runs (cluster_launch_supported)
#endif
}

bool cluster_launch_supported() { return code_arch() >= 90; }  // pdl.cuh

template <RowSrc S>
void launch_silu_cluster(const float* gu, int64_t m, int64_t ffn, int8_t* q, float* scales,
                         cudaStream_t stream) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(kClusterCtas, static_cast<unsigned>(m));
  cfg.blockDim = dim3(kClusterThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kClusterCtas;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_supported() ? 2 : 1;
  SQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, silu_mul_quant_cluster_kernel<S>, gu,
                                   static_cast<int>(ffn), q, scales));
}

// Rows up to this many bytes are staged in shared memory: 200 KB, or the device's opt-in limit.
int max_stage_bytes() {
  return std::min(200 * 1024, max_dynamic_smem() - 1024);  // room for its static shared memory
}

template <int Threads, bool kVec4, RowSrc S>
void launch_rows(const float* src, int64_t m, int64_t ffn, int8_t* q, float* scales,
                 cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(ffn) * sizeof(float);
  if (bytes > static_cast<size_t>(max_stage_bytes())) {
    launch_pdl(quant_rows_kernel<Threads, false, kVec4, S>, dim3(static_cast<unsigned>(m)),
               dim3(Threads), stream, src, static_cast<int>(ffn), q, scales);
  } else {
    static const bool attr_set = [] {
      SQ_CUDA_CHECK(cudaFuncSetAttribute(quant_rows_kernel<Threads, true, kVec4, S>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         max_stage_bytes()));
      return true;
    }();
    (void)attr_set;
    launch_pdl_smem(quant_rows_kernel<Threads, true, kVec4, S>, dim3(static_cast<unsigned>(m)),
                    dim3(Threads), bytes, stream, src, static_cast<int>(ffn), q, scales);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

// One block per row; 1024-thread blocks for decode-sized m. 16-byte rows for the vector path:
// src rows are (1 or 2)·ffn floats (up starts ffn floats or kGluBlock floats in), q rows ffn bytes.
template <RowSrc S>
void launch_rows(const float* src, int64_t m, int64_t ffn, int8_t* q, float* scales,
                 cudaStream_t stream) {
  const bool vec4 = ffn % 4 == 0 && aligned(src, 16) && aligned(q, 4);
  auto go = [&](auto threads) {
    constexpr int kT = decltype(threads)::value;
    if (vec4) return launch_rows<kT, true, S>(src, m, ffn, q, scales, stream);
    launch_rows<kT, false, S>(src, m, ffn, q, scales, stream);
  };
  if (m <= kWideMaxRows) return go(std::integral_constant<int, kWideThreads>{});
  go(std::integral_constant<int, kThreads>{});
}

template <typename T, bool kNorm>
void launch(T* x, const float* res, const float* w, float eps, int64_t m, int64_t d, int8_t* q,
            float* scales, cudaStream_t stream) {
  if (d <= 0 || d > kMaxWidth)
    throw std::runtime_error("rms_norm_quant: hidden size " + std::to_string(d) +
                             " outside [1, 8192]");
  if (m <= 0) return;
  auto go = [&](auto threads, auto vec4) {
    constexpr int kT = decltype(threads)::value;
    launch_pdl(rms_norm_quant_kernel<T, kNorm, kT, decltype(vec4)::value>,
               dim3(static_cast<unsigned>(m)), dim3(kT), stream, x, res, w, eps,
               static_cast<int>(d), q, scales);
  };
  // 16-byte rows for the vector path: x, res and q row starts stay aligned when d % 4 == 0.
  const bool vec4 =
      sizeof(T) == 4 && d % 4 == 0 && aligned(x, 16) && aligned(res, 16) && aligned(q, 4);
  using Wide = std::integral_constant<int, kWideThreads>;
  using Narrow = std::integral_constant<int, kThreads>;
  if constexpr (sizeof(T) == 4) {
    if (vec4)
      return m <= kWideMaxRows ? go(Wide{}, std::true_type{}) : go(Narrow{}, std::true_type{});
  }
  if (m <= kWideMaxRows) return go(Wide{}, std::false_type{});
  go(Narrow{}, std::false_type{});
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void rms_norm_quant_s8(const float* x, const float* w, float eps, int64_t m, int64_t d, int8_t* q,
                       float* scales, cudaStream_t stream) {
  launch<float, true>(const_cast<float*>(x), nullptr, w, eps, m, d, q, scales, stream);
}

void add_rms_norm_quant_s8(float* x, const float* res, const float* w, float eps, int64_t m,
                           int64_t d, int8_t* q, float* scales, cudaStream_t stream) {
  launch<float, true>(x, res, w, eps, m, d, q, scales, stream);
}

void silu_mul_quant_s8(const float* gu, int64_t m, int64_t ffn, int8_t* q, float* scales,
                       cudaStream_t stream, bool interleaved) {
  if (ffn <= 0) throw std::runtime_error("silu_mul_quant_s8: empty rows");
  if (interleaved && ffn % kGluBlock != 0)
    throw std::runtime_error("silu_mul_quant_s8: interleaved gate|up rows need ffn % " +
                             std::to_string(kGluBlock) + " == 0, got " + std::to_string(ffn));
  if (m <= 0) return;
  if (m <= kClusterMaxRows && ffn <= kClusterMaxFfn && cluster_launch_supported()) {
    if (interleaved)
      return launch_silu_cluster<RowSrc::kInterleaved>(gu, m, ffn, q, scales, stream);
    return launch_silu_cluster<RowSrc::kGateUp>(gu, m, ffn, q, scales, stream);
  }
  if (interleaved) return launch_rows<RowSrc::kInterleaved>(gu, m, ffn, q, scales, stream);
  launch_rows<RowSrc::kGateUp>(gu, m, ffn, q, scales, stream);
}

void quantize_per_token_s8(const float* x, int64_t m, int64_t d, int8_t* q, float* scales,
                           cudaStream_t stream) {
  if (d <= 0) throw std::runtime_error("quantize_per_token_s8: empty rows");
  if (m <= 0) return;
  launch_rows<RowSrc::kPlain>(x, m, d, q, scales, stream);
}

void quantize_rows_s8(const float* x, const float* row_absmax, int64_t m, int64_t d, int8_t* q,
                      float* scales, cudaStream_t stream) {
  if (d <= 0 || d > INT32_MAX / 2) throw std::runtime_error("quantize_rows_s8: bad row width");
  if (m <= 0) return;
  const bool vec4 = d % 4 == 0 && aligned(x, 16) && aligned(q, 4);
  const int64_t per_row = vec4 ? d / 4 : d;
  const dim3 grid(static_cast<unsigned>((per_row + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  if (vec4) {
    launch_pdl(quantize_known_absmax_kernel<true>, grid, dim3(kThreads), stream, x, row_absmax, m,
               static_cast<int>(d), q, scales);
  } else {
    launch_pdl(quantize_known_absmax_kernel<false>, grid, dim3(kThreads), stream, x, row_absmax, m,
               static_cast<int>(d), q, scales);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_quant_s8(const uint16_t* x_bf16, const float* w, float eps, int64_t m, int64_t d,
                       int8_t* q, float* scales, cudaStream_t stream) {
  launch<__nv_bfloat16, true>(
      const_cast<__nv_bfloat16*>(reinterpret_cast<const __nv_bfloat16*>(x_bf16)), nullptr, w, eps,
      m, d, q, scales, stream);
}

}  // namespace sq::cuda
