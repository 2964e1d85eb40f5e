// attention_mma.cuh. Block = kWarps warps × 16 query rows of one head; kKeys-key tiles of K and V
// staged in shared memory by cp.async, double-buffered (the next tile loads while this one is
// multiplied), rows padded by 4 floats so that the fragment loads below are bank-conflict free.
// Per warp and tile: S = Q·Kᵀ as kKeys/8 n-blocks of m16n8k8, the online softmax on the
// accumulator fragments (a row's values live in the 4 lanes of a quad), then O += P·V with P taken
// straight from the S fragments: within each 8-key chunk the MMA's k index t ↔ key 2t and t + 4 ↔
// key 2t + 1, and V is read with the same permutation (a sum over keys is order-free).
// The three products of 3xTF32 are issued as three passes over independent accumulators (each
// accumulator still receives small·big, big·small, big·big in that order). What bounds the kernel
// is instruction issue, not the MMAs: at 2048 tokens ncu counted 524 M instructions, 14% of them
// MMAs; splitting with integer rounding instead of cvt.rna.tf32 took it to 345 M (1.58 → 1.25 ms
// per layer, 4 × 32 blocks).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernel_launch.cuh"

namespace sq::cuda::ops {
namespace {

// 8 warps (128 query rows) × 64-key tiles: 203 KB of shared memory, one block per SM. Measured
// on the H200 (ncu, Llama-2-7B heads, 512 / 2048 tokens) against 4 × 32 (two blocks per SM),
// 8 × 32 and 4 × 64: 120 / 1227 µs against 130 / 1248, 131 / 1358 and 142 / 1407.
constexpr int kBlockWarps = 8, kTileKeys = 64;

// x = big + small exactly: big is x rounded to TF32's 10 mantissa bits (half away from zero, in
// integer arithmetic: cvt.rna.tf32.f32 is emulated by a longer sequence on sm_80/sm_90, and the
// splits were most of the kernel's instructions), small the remainder, |small| ≤ 2⁻¹¹·|x|. The
// MMA reads only small's top TF32 bits, so it contributes with a relative error ≤ 2⁻¹⁰, i.e.
// ≤ 2⁻²¹ of x. Inputs are finite (attention over finite activations).
__device__ __forceinline__ void split(float x, uint32_t& big, uint32_t& small) {
  const float b = __uint_as_float((__float_as_uint(x) + 0x1000u) & 0xFFFFE000u);
  big = __float_as_uint(b);
  small = __float_as_uint(__fsub_rn(x, b));
}

// Not volatile: the result is the only effect, so the compiler may interleave independent MMAs.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
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

// d[d0 + i] += a·b[i] in 3xTF32 for N independent accumulators, pass by pass (small terms
// first). d0 is a constant once the callers' loops are unrolled.
template <int N, int D>
__device__ __forceinline__ void mma_3xtf32_n(float (&d)[D][4], int d0, const SplitA& a,
                                             const uint32_t (&bb)[N][2],
                                             const uint32_t (&bs)[N][2]) {
#pragma unroll
  for (int i = 0; i < N; ++i) mma_tf32(d[d0 + i], a.small, bb[i][0], bb[i][1]);
#pragma unroll
  for (int i = 0; i < N; ++i) mma_tf32(d[d0 + i], a.big, bs[i][0], bs[i][1]);
#pragma unroll
  for (int i = 0; i < N; ++i) mma_tf32(d[d0 + i], a.big, bb[i][0], bb[i][1]);
}

// 16-byte global → shared copy, zero-filled when !valid (src must still be a mapped address).
__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool valid) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

template <int HD, int kWarps, int kKeys>
constexpr int smem_bytes() {
  return (16 * kWarps + 4 * kKeys) * (HD + 4) * 4;  // Q, then two buffers of K and V
}

template <int HD, int kWarps, int kKeys>
__global__ void __launch_bounds__(kWarps * 32)
    attention_mma_k(const float* q, const float* kc, const float* vc, float* out, int m,
                    const int* pos, int heads, int kv_heads, float scale) {
  constexpr int kRows = 16 * kWarps, LD = HD + 4, NB = kKeys / 8, OB = HD / 8, KS = HD / 8;
  constexpr int OG = OB <= 8 ? OB : OB / 2;  // output blocks per 3xTF32 pass group in P·V
  static_assert(OB % OG == 0 && OG <= 8);
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // [kRows][LD]
  float* kv_s = qs + kRows * LD;                // 2 × ([kKeys][LD] K, then V)
  const int h = blockIdx.y, kvh = h / (heads / kv_heads);
  const int i0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // heavy (late) row blocks first
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int pos0 = *pos;
  const int64_t q_stride = static_cast<int64_t>(heads) * HD;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * HD;
  const int block_keys = pos0 + min(i0 + kRows, m);
  const int tiles = (block_keys + kKeys - 1) / kKeys;

  auto load_kv = [&](int buf, int k0) {
    float* ks = kv_s + buf * 2 * kKeys * LD;
    for (int e = threadIdx.x; e < kKeys * (HD / 4); e += blockDim.x) {
      const int j = e / (HD / 4), d4 = e % (HD / 4);
      const bool valid = k0 + j < block_keys;
      const int64_t off = static_cast<int64_t>(valid ? k0 + j : 0) * kv_stride + kvh * HD + d4 * 4;
      cp_async16(ks + j * LD + d4 * 4, kc + off, valid);
      cp_async16(ks + (kKeys + j) * LD + d4 * 4, vc + off, valid);
    }
  };
  for (int e = threadIdx.x; e < kRows * (HD / 4); e += blockDim.x) {
    const int r = e / (HD / 4), d4 = e % (HD / 4);
    const bool valid = i0 + r < m;
    cp_async16(qs + r * LD + d4 * 4, q + (valid ? i0 + r : 0) * q_stride + h * HD + d4 * 4, valid);
  }
  load_kv(0, 0);
  cp_async_commit();

  const int r0 = warp * 16;
  const int row_lo = i0 + r0 + g, row_hi = row_lo + 8;  // this thread's two query rows
  float o[OB][4];
#pragma unroll
  for (int b = 0; b < OB; ++b) o[b][0] = o[b][1] = o[b][2] = o[b][3] = 0.0f;
  float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};

  for (int tile = 0; tile < tiles; ++tile) {
    const int k0 = tile * kKeys;
    if (tile + 1 < tiles) load_kv((tile + 1) & 1, k0 + kKeys);
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning this tile
    cp_async_wait<1>();
    __syncthreads();
    const float* ks = kv_s + (tile & 1) * 2 * kKeys * LD;
    const float* vs = ks + kKeys * LD;
    // A warp whose rows all precede this tile has nothing to add (causal).
    if (k0 <= pos0 + min(i0 + r0 + 15, m - 1)) {
      float s[NB][4];
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll 2
      for (int kk = 0; kk < KS; ++kk) {
        const float* qa = qs + (r0 + g) * LD + kk * 8 + t;
        const SplitA a = split_a({qa[0], qa[8 * LD], qa[4], qa[8 * LD + 4]});
        uint32_t bb[NB][2], bs[NB][2];
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          const float* kb = ks + (nb * 8 + g) * LD + kk * 8 + t;
          split(kb[0], bb[nb][0], bs[nb][0]);
          split(kb[4], bb[nb][1], bs[nb][1]);
        }
        mma_3xtf32_n(s, 0, a, bb, bs);
      }
      // Fragment (nb, c): row lo (c < 2) or hi, key k0 + 8·nb + 2t + (c & 1).
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
            float& v = s[nb][2 * half + c];  // becomes p
            v = v == -INFINITY ? 0.0f : expf(v - m_new);
            rs += v;
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
        const SplitA a = split_a({s[nb][0], s[nb][2], s[nb][1], s[nb][3]});
        const float* vb = vs + (nb * 8 + 2 * t) * LD + g;
#pragma unroll
        for (int b0 = 0; b0 < OB; b0 += OG) {
          uint32_t bb[OG][2], bs[OG][2];
#pragma unroll
          for (int i = 0; i < OG; ++i) {
            split(vb[(b0 + i) * 8], bb[i][0], bs[i][0]);
            split(vb[LD + (b0 + i) * 8], bb[i][1], bs[i][1]);
          }
          mma_3xtf32_n(o, b0, a, bb, bs);
        }
      }
    }
    __syncthreads();  // this buffer is refilled for tile + 2 at the next iteration
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

template <int HD, int kWarps, int kKeys>
void launch(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
            const int* pos, int64_t heads, int64_t kv_heads, float scale, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((m + 16 * kWarps - 1) / (16 * kWarps)),
                  static_cast<unsigned>(heads));
  launch_with_smem<attention_mma_k<HD, kWarps, kKeys>>(
      grid, dim3(kWarps * 32), smem_bytes<HD, kWarps, kKeys>(), s, q, k_cache, v_cache, out,
      static_cast<int>(m), pos, static_cast<int>(heads), static_cast<int>(kv_heads), scale);
}

}  // namespace

bool attention_mma_supports(int64_t head_dim) {
  return dispatch_mma_head_dim(head_dim, [](auto) {});
}

void attention_mma(const float* q, const float* k_cache, const float* v_cache, float* out,
                   int64_t m, const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim,
                   float scale, cudaStream_t s) {
  const bool ok = dispatch_mma_head_dim(head_dim, [&](auto hd) {
    launch<decltype(hd)::value, kBlockWarps, kTileKeys>(q, k_cache, v_cache, out, m, pos, heads,
                                                        kv_heads, scale, s);
  });
  if (!ok) throw std::runtime_error("attention_mma: unsupported head_dim");
}

}  // namespace sq::cuda::ops
