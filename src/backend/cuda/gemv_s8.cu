// The decode path of the CUDA INT8 GEMM (gemm_s8_cuda.h) for M ≤ 16 rows, where the int8 weights
// are read once and the problem is memory-bound. M ≤ 2: one 256-thread block owns kCols columns
// for all M rows; its 8 warps split K (each lane streams 16-byte chunks of the kCols weight rows,
// coalesced within the warp), multiply with dp4a against the activation chunks (L1/L2-resident),
// reduce through warp shuffles and shared memory, and apply the same epilogue as the tiled kernel.
// int32 sums are exact in any order, so the split over warps keeps results bit-exact. Both kernels
// are launched with programmatic dependent launch (pdl.cuh): weights stream before the wait.
#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>

#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/pdl.cuh"

namespace sq::cuda {
namespace {

constexpr int kWarps = 8;

// One output element: the raw int32 sum, or the W8A8 epilogue in the CPU's order
// (acc · sx · sw + bias, each step rounded to fp32, no FMA) stored as fp32 or bf16.
template <bool kEpilogue>
__device__ __forceinline__ void store(int32_t v, int row, int col, int n, const GemmS8Epilogue& ep,
                                      int32_t* c, uint16_t* y) {
  const int64_t off = int64_t(row) * n + col;
  if constexpr (kEpilogue) {
    float f = __fmul_rn(static_cast<float>(v), ep.sx[ep.per_token ? row : 0]);
    f = __fmul_rn(f, ep.sw[ep.per_channel ? col : 0]);
    if (ep.bias) f = __fadd_rn(f, ep.bias[col]);
    if (ep.f32_out) {
      reinterpret_cast<float*>(y)[off] = f;
    } else {
      y[off] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
    }
  } else {
    c[off] = v;
  }
}

template <int kM, int kCols, bool kBf16Out>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_s8_kernel(const int8_t* a, const int8_t* __restrict__ w, int32_t* c, uint16_t* y,
                   GemmS8Epilogue ep, int m, int n, int k) {
  __shared__ int32_t partial[kWarps][kCols][kM];
  const int wi = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n0 = blockIdx.x * kCols;
  const int chunks = k / 16;
  int32_t acc[kCols][kM];
#pragma unroll
  for (int j = 0; j < kCols; ++j)
#pragma unroll
    for (int r = 0; r < kM; ++r) acc[j][r] = 0;

  // The first chunk's weight rows are loaded before pdl_wait(), so that they stream while the
  // kernel that quantizes the activations is still running. (Loading every chunk one iteration
  // ahead cost registers and occupancy: 7% slower decode on the H200.)
  auto load_w = [&](int ch, int4(&wv)[kCols]) {
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      wv[j] = ch < chunks && n0 + j < n
                  ? __ldg(reinterpret_cast<const int4*>(w + int64_t(n0 + j) * k) + ch)
                  : make_int4(0, 0, 0, 0);
    }
  };
  const int ch0 = wi * 32 + lane;
  int4 wv[kCols];
  load_w(ch0, wv);
  pdl_trigger();  // the next kernel (launched with PDL) waits for our completion anyway
  pdl_wait();
  for (int ch = ch0; ch < chunks; ch += kWarps * 32) {
    if (ch != ch0) load_w(ch, wv);
#pragma unroll
    for (int r = 0; r < kM; ++r) {
      if (r >= m) break;
      // A coherent load: the previous grid wrote `a` while this one was already resident (PDL).
      const int4 av = *(reinterpret_cast<const int4*>(a + int64_t(r) * k) + ch);
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        int32_t s = acc[j][r];
        s = __dp4a(av.x, wv[j].x, s);
        s = __dp4a(av.y, wv[j].y, s);
        s = __dp4a(av.z, wv[j].z, s);
        s = __dp4a(av.w, wv[j].w, s);
        acc[j][r] = s;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
#pragma unroll
    for (int r = 0; r < kM; ++r) {
      int32_t v = acc[j][r];
#pragma unroll
      for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) partial[wi][j][r] = v;
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < kCols * kM; t += blockDim.x) {
    const int j = t / kM, r = t % kM, col = n0 + j;
    if (r >= m || col >= n) continue;
    int32_t v = 0;
#pragma unroll
    for (int q = 0; q < kWarps; ++q) v += partial[q][j][r];
    store<kBf16Out>(v, r, col, n, ep, c, y);
  }
}

__device__ __forceinline__ void mma_s8_m16n8k32(int32_t (&d)[4], const uint32_t (&a)[4],
                                                uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Tensor-core variant for 2 < M ≤ 16: rows padded to 16, mma.sync m16n8k32 (IMMA). A 64-byte K
// chunk is one 16-byte load per lane for 8 weight rows (lane = 4·g + t reads bytes [16t, 16t+16)
// of row g); the dot product is over all of K, so the same permutation of K inside the chunk is
// applied to A and the fragments are fed straight from those loads.
// 16 warps split K so that even N = 4096 gives enough blocks (N / 16) and bytes in flight to
// approach the copy bandwidth.
constexpr int kMmaWarps = 16;

template <int kJ, bool kBf16Out>
__global__ void __launch_bounds__(kMmaWarps * 32)
    gemv_s8_mma_kernel(const int8_t* a, const int8_t* __restrict__ w, int32_t* c, uint16_t* y,
                       GemmS8Epilogue ep, int m, int n, int k) {
  __shared__ int32_t partial[kMmaWarps][kJ * 32 * 4];
  const int wi = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * kJ * 8;
  const int chunks = (k + 63) / 64;
  int32_t acc[kJ][4];
#pragma unroll
  for (int j = 0; j < kJ; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
  const int4 zero = make_int4(0, 0, 0, 0);
  auto load_w = [&](int ch, int4(&wv)[kJ]) {
    const int kb = ch * 64 + 16 * t;
    const bool k_ok = ch < chunks && kb < k;  // K % 16 == 0: a segment is wholly in or out
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int col = n0 + 8 * j + g;
      wv[j] =
          k_ok && col < n ? __ldg(reinterpret_cast<const int4*>(w + int64_t(col) * k + kb)) : zero;
    }
  };
  constexpr int kBatch = 2;
  // kBatch chunks per warp are loaded before any is multiplied, the first batch before
  // pdl_wait() as in gemv_s8_kernel. H200, M = 4 and 16 on the four Llama shapes, one run: batch 2
  // streamed 4–13% faster than one chunk at a time (3.55 against 3.28 TB/s at M = 16, 8192×28672);
  // batch 4 took 74 registers, one block per SM, and was 25–35% slower; 8 warps per block (batch
  // 2 or 4, 8 or 16 columns) were slower still.
  int4 wv[kBatch][kJ];
#pragma unroll
  for (int b = 0; b < kBatch; ++b) load_w(wi + b * kMmaWarps, wv[b]);
  pdl_trigger();
  pdl_wait();
  for (int ch0 = wi; ch0 < chunks; ch0 += kBatch * kMmaWarps) {
    if (ch0 != wi) {
#pragma unroll
      for (int b = 0; b < kBatch; ++b) load_w(ch0 + b * kMmaWarps, wv[b]);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      // Coherent loads of the activations, which the previous grid wrote (PDL).
      const int ch = ch0 + b * kMmaWarps, kb = ch * 64 + 16 * t;
      const bool k_ok = ch < chunks && kb < k;
      const int4 a_lo =
          k_ok && g < m ? *reinterpret_cast<const int4*>(a + int64_t(g) * k + kb) : zero;
      const int4 a_hi =
          k_ok && g + 8 < m ? *reinterpret_cast<const int4*>(a + int64_t(g + 8) * k + kb) : zero;
      const uint32_t f0[4] = {uint32_t(a_lo.x), uint32_t(a_hi.x), uint32_t(a_lo.y),
                              uint32_t(a_hi.y)};
      const uint32_t f1[4] = {uint32_t(a_lo.z), uint32_t(a_hi.z), uint32_t(a_lo.w),
                              uint32_t(a_hi.w)};
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        mma_s8_m16n8k32(acc[j], f0, uint32_t(wv[b][j].x), uint32_t(wv[b][j].y));
        mma_s8_m16n8k32(acc[j], f1, uint32_t(wv[b][j].z), uint32_t(wv[b][j].w));
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kJ; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) partial[wi][(j * 32 + lane) * 4 + r] = acc[j][r];
  __syncthreads();
  // Accumulator layout of m16n8: lane 4g + t holds rows g (regs 0, 1) and g + 8 (regs 2, 3),
  // columns 2t and 2t + 1.
  for (int e = threadIdx.x; e < kJ * 32 * 4; e += blockDim.x) {
    const int j = e / 128, ln = (e / 4) % 32, r = e % 4;
    const int row = ln / 4 + 8 * (r / 2), col = n0 + 8 * j + 2 * (ln % 4) + (r % 2);
    if (row >= m || col >= n) continue;
    int32_t v = 0;
#pragma unroll
    for (int q = 0; q < kMmaWarps; ++q) v += partial[q][e];
    store<kBf16Out>(v, row, col, n, ep, c, y);
  }
}

template <int kM, bool kBf16Out>
void launch_m(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y, const GemmS8Epilogue& ep,
              int m, int n, int k, cudaStream_t stream) {
  constexpr int kCols = kM <= 4 ? 8 : 4;
  const unsigned blocks = static_cast<unsigned>((n + kCols - 1) / kCols);
  launch_pdl(gemv_s8_kernel<kM, kCols, kBf16Out>, dim3(blocks), dim3(kWarps * 32), stream, a, w, c,
             y, ep, m, n, k);
}

}  // namespace

void gemv_s8(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y, const GemmS8Epilogue& ep,
             int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m < 1 || m > kGemvMaxRows) throw std::runtime_error("gemv_s8: M must be in [1, 16]");
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  auto go = [&](auto bf16) {
    constexpr bool kB = decltype(bf16)::value;
    if (m <= 1) return launch_m<1, kB>(a, w, c, y, ep, mi, ni, ki, stream);
    if (m <= 2) return launch_m<2, kB>(a, w, c, y, ep, mi, ni, ki, stream);
    // Beyond two rows dp4a becomes the bottleneck; the tensor cores are not.
    constexpr int kJ = 2;
    const unsigned blocks = static_cast<unsigned>((n + kJ * 8 - 1) / (kJ * 8));
    launch_pdl(gemv_s8_mma_kernel<kJ, kB>, dim3(blocks), dim3(kMmaWarps * 32), stream, a, w, c, y,
               ep, mi, ni, ki);
  };
  if (y) {
    go(std::true_type{});
  } else {
    go(std::false_type{});
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sq::cuda
