// attention_mma.cuh. Block = 4 warps × 16 query rows of one head; 64-key tiles of K and V staged
// in shared memory (rows padded by 4 floats: the fragment loads below are bank-conflict free).
// Per warp and tile: S = Q·Kᵀ as 8 n-blocks of m16n8k8, the online softmax on the accumulator
// fragments (a row's values live in the 4 lanes of a quad), then O += P·V with P taken straight
// from the S fragments: within each 8-key chunk the MMA's k index t ↔ key 2t and t + 4 ↔ key
// 2t + 1, and V is read with the same permutation (a sum over keys is order-free).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernel_launch.cuh"

namespace sq::cuda::ops {
namespace {

constexpr int kWarps = 4, kRows = 16 * kWarps, kKeys = 64;

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// x = big + small, both TF32.
__device__ __forceinline__ void split(float x, uint32_t& big, uint32_t& small) {
  big = to_tf32(x);
  small = to_tf32(x - __uint_as_float(big));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// An A fragment split once into its TF32 big and small parts (reused across n-blocks).
struct SplitA {
  uint32_t big[4], small[4];
};
__device__ __forceinline__ SplitA split_a(const float (&a)[4]) {
  SplitA r;
#pragma unroll
  for (int i = 0; i < 4; ++i) split(a[i], r.big[i], r.small[i]);
  return r;
}

// d += a·b in 3xTF32 (small terms first).
__device__ __forceinline__ void mma_3xtf32(float (&d)[4], const SplitA& a, float b0, float b1) {
  uint32_t bb0, bs0, bb1, bs1;
  split(b0, bb0, bs0);
  split(b1, bb1, bs1);
  mma_tf32(d, a.small, bb0, bb1);
  mma_tf32(d, a.big, bs0, bs1);
  mma_tf32(d, a.big, bb0, bb1);
}

template <int HD>
constexpr int smem_bytes() {
  return (kRows + 2 * kKeys) * (HD + 4) * 4;
}

template <int HD>
__global__ void __launch_bounds__(kWarps * 32)
    attention_mma_k(const float* q, const float* kc, const float* vc, float* out, int m,
                    const int* pos, int heads, int kv_heads, float scale) {
  constexpr int LD = HD + 4, NB = kKeys / 8, OB = HD / 8, KS = HD / 8;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // [kRows][LD]
  float* ks = qs + kRows * LD;                  // [kKeys][LD]
  float* vs = ks + kKeys * LD;                  // [kKeys][LD]
  const int h = blockIdx.y, kvh = h / (heads / kv_heads);
  const int i0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // heavy (late) row blocks first
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int pos0 = *pos;
  const int64_t q_stride = static_cast<int64_t>(heads) * HD;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * HD;

  for (int e = threadIdx.x; e < kRows * (HD / 4); e += blockDim.x) {
    const int r = e / (HD / 4), d4 = e % (HD / 4);
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i0 + r < m) v = *reinterpret_cast<const float4*>(q + (i0 + r) * q_stride + h * HD + d4 * 4);
    *reinterpret_cast<float4*>(qs + r * LD + d4 * 4) = v;
  }
  const int r0 = warp * 16;
  const int row_lo = i0 + r0 + g, row_hi = row_lo + 8;  // this thread's two query rows
  float o[OB][4];
#pragma unroll
  for (int b = 0; b < OB; ++b) o[b][0] = o[b][1] = o[b][2] = o[b][3] = 0.0f;
  float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};

  const int block_keys = pos0 + min(i0 + kRows, m);
  for (int k0 = 0; k0 < block_keys; k0 += kKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int e = threadIdx.x; e < kKeys * (HD / 4); e += blockDim.x) {
      const int j = e / (HD / 4), d4 = e % (HD / 4);
      float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
      if (k0 + j < block_keys) {
        kv = *reinterpret_cast<const float4*>(kc + (k0 + j) * kv_stride + kvh * HD + d4 * 4);
        vv = *reinterpret_cast<const float4*>(vc + (k0 + j) * kv_stride + kvh * HD + d4 * 4);
      }
      *reinterpret_cast<float4*>(ks + j * LD + d4 * 4) = kv;
      *reinterpret_cast<float4*>(vs + j * LD + d4 * 4) = vv;
    }
    __syncthreads();
    // A warp whose rows all precede this tile has nothing to add (causal).
    if (k0 > pos0 + min(i0 + r0 + 15, m - 1)) continue;

    float s[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll 2
    for (int kk = 0; kk < KS; ++kk) {
      const float* qa = qs + (r0 + g) * LD + kk * 8 + t;
      const SplitA a = split_a({qa[0], qa[8 * LD], qa[4], qa[8 * LD + 4]});
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        const float* kb = ks + (nb * 8 + g) * LD + kk * 8 + t;
        mma_3xtf32(s[nb], a, kb[0], kb[4]);
      }
    }
    // Fragment (nb, c): row lo (c < 2) or hi, key k0 + 8·nb + 2t + (c & 1).
    float p[NB][4];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = half ? row_hi : row_lo;
      float tile_mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = k0 + nb * 8 + 2 * t + c;
          float& v = s[nb][2 * half + c];
          v = (row < m && key <= pos0 + row) ? v * scale : -INFINITY;
          tile_mx = fmaxf(tile_mx, v);
        }
      tile_mx = fmaxf(tile_mx, __shfl_xor_sync(0xffffffffu, tile_mx, 1));
      tile_mx = fmaxf(tile_mx, __shfl_xor_sync(0xffffffffu, tile_mx, 2));
      const float m_new = fmaxf(mx[half], tile_mx);
      const float corr = m_new == -INFINITY ? 1.0f : expf(mx[half] - m_new);
      float rs = 0.0f;
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float v = s[nb][2 * half + c];
          const float e = v == -INFINITY ? 0.0f : expf(v - m_new);
          p[nb][2 * half + c] = e;
          rs += e;
        }
      rs += __shfl_xor_sync(0xffffffffu, rs, 1);
      rs += __shfl_xor_sync(0xffffffffu, rs, 2);
      sum[half] = sum[half] * corr + rs;
      mx[half] = m_new;
#pragma unroll
      for (int b = 0; b < OB; ++b) {
        o[b][2 * half] *= corr;
        o[b][2 * half + 1] *= corr;
      }
    }
    // O += P·V. A fragment of chunk nb: (lo, k t) = key 2t, (hi, t), (lo, t + 4) = key 2t + 1,
    // (hi, t + 4); B: V[key 2t][col], V[key 2t + 1][col] with col = 8·ob + g.
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      const SplitA a = split_a({p[nb][0], p[nb][2], p[nb][1], p[nb][3]});
      const float* vb = vs + (nb * 8 + 2 * t) * LD + g;
#pragma unroll
      for (int b = 0; b < OB; ++b) mma_3xtf32(o[b], a, vb[b * 8], vb[LD + b * 8]);
    }
  }
  // Output fragment (b, c): row lo (c < 2) or hi, column 8·b + 2t + (c & 1).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = half ? row_hi : row_lo;
    if (row >= m) continue;
    const float inv = 1.0f / sum[half];
#pragma unroll
    for (int b = 0; b < OB; ++b) {
      float* dst = out + row * q_stride + h * HD + b * 8 + 2 * t;
      *reinterpret_cast<float2*>(dst) = make_float2(o[b][2 * half] * inv, o[b][2 * half + 1] * inv);
    }
  }
}

// The head dims instantiated.
template <typename F>
bool dispatch_mma_head_dim(int64_t head_dim, F&& f) {
  return dispatch_head_dim<16, 32, 64, 80, 96, 128>(head_dim, f);
}

}  // namespace

bool attention_mma_supports(int64_t head_dim) {
  return dispatch_mma_head_dim(head_dim, [](auto) {});
}

void attention_mma(const float* q, const float* k_cache, const float* v_cache, float* out,
                   int64_t m, const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim,
                   float scale, cudaStream_t s) {
  const bool ok = dispatch_mma_head_dim(head_dim, [&](auto hd) {
    constexpr int kHd = decltype(hd)::value;
    const dim3 grid(static_cast<unsigned>((m + kRows - 1) / kRows), static_cast<unsigned>(heads));
    launch_with_smem<attention_mma_k<kHd>>(
        grid, dim3(kWarps * 32), smem_bytes<kHd>(), s, q, k_cache, v_cache, out,
        static_cast<int>(m), pos, static_cast<int>(heads), static_cast<int>(kv_heads), scale);
  });
  if (!ok) throw std::runtime_error("attention_mma: unsupported head_dim");
}

}  // namespace sq::cuda::ops
