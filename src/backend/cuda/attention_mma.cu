// attention_mma.cuh. Block = kWarps warps × 16 query rows of one head, one block per SM; K/V tiles
// of kKeys keys. Operands are split once, when staged to shared memory, into two FP16 parts
// (x = hi + lo, both FP16, 22 significant bits together: the precision of 3xTF32's split, at twice
// its rate and half its instructions: m16n8k16 FP16 has twice the k of m16n8k8 TF32 at the same
// issue cost). Each product is hi·hi + hi·lo + lo·hi in fp32 accumulators; lo·lo (below 2⁻²²
// relative) is dropped.
// Shared memory holds every operand in MMA fragment order, so one 128-bit load yields the hi and lo
// registers an instruction pair needs: Q (scaled by the softmax scale) per (warp, 16-dim step,
// lane); K per (key, 16-dim step, t); V per (16-key step, column, t). K/V tiles for tile t + 2 are
// loaded into registers while tile t is multiplied, and tile t + 1 is split and stored into the
// second buffer after it: one barrier per tile.
// S = Q·Kᵀ in m16n8k16 blocks of 8 keys; the online softmax runs on the accumulator fragments (a
// row's values live in the 4 lanes of a quad); the S fragments of two neighbouring 8-key blocks are
// exactly the A fragment of P for O += P·V (the FlashAttention-2 register reuse).
// Scores are kept in base 2 (Q scaled by scale·log2 e, probabilities by exp2f: one MUFU.EX2, where
// expf costs a range reduction of several FP32 instructions — ncu counted 21 M non-fused FP32
// instructions per 2048-token layer).
// Range: FP16's 65504 bounds |q·scale·log2 e|, |k| and |v| (the hi parts); attention inputs after
// normalisation and projection stay orders of magnitude below. Parts below 2⁻¹⁴ lose relative
// precision as subnormals, at an absolute error ≤ 2⁻²⁵ per element.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernel_launch.cuh"

namespace sq::cuda::ops {
namespace {

// 8 warps (128 query rows) × 64-key tiles: Q 64 KB and two K/V buffers of 68 KB (K 36, V 32) at
// head dim 128, 200 KB in all: Hopper's 227 KB hold it; A100 (163 KB) and Ada (99 KB) take the
// fp32-core kernels for the head dims that do not fit (attention_mma_supports).
constexpr int kBlockWarps = 8, kTileKeys = 64;

// Not volatile: the result is the only effect, so the compiler may interleave independent MMAs.
__device__ __forceinline__ void mma_f16(float (&d)[4], const uint4& a, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t as_u32(__half2 h) {
  return *reinterpret_cast<const uint32_t*>(&h);
}

// (x0, x1) → hi and lo half2 pairs with x = hi + lo (hi rounded to nearest, lo the rounded rest).
__device__ __forceinline__ void split2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x0, x1);
  const float2 hf = __half22float2(h);
  hi = as_u32(h);
  lo = as_u32(__floats2half2_rn(x0 - hf.x, x1 - hf.y));
}

// {hi(a0, a1), hi(b0, b1), lo(a0, a1), lo(b0, b1)}: one B operand (two registers) in both parts.
__device__ __forceinline__ uint4 split_b(float a0, float a1, float b0, float b1) {
  uint4 r;
  split2(a0, a1, r.x, r.z);
  split2(b0, b1, r.y, r.w);
  return r;
}

// d[d0 + i] += a·b[i] for N accumulators, pass by pass (hi·hi, hi·lo, lo·hi): independent MMAs
// between dependent ones. d0 is a constant once the callers' loops are unrolled.
template <int N, int D>
__device__ __forceinline__ void mma_2xf16_n(float (&d)[D][4], int d0, const uint4& a_hi,
                                            const uint4& a_lo, const uint4 (&b)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) mma_f16(d[d0 + i], a_hi, b[i].x, b[i].y);
#pragma unroll
  for (int i = 0; i < N; ++i) mma_f16(d[d0 + i], a_hi, b[i].z, b[i].w);
#pragma unroll
  for (int i = 0; i < N; ++i) mma_f16(d[d0 + i], a_lo, b[i].x, b[i].y);
}

template <int HD, int kWarps, int kKeys>
struct Layout {
  static constexpr int kRows = 16 * kWarps, KS = HD / 16;
  // K row stride in 16-byte units: ≡ 4 mod 8 keeps a quarter-warp's 128-bit loads (keys g, g + 1;
  // t = 0..3) on distinct bank groups.
  static constexpr int kLdK = HD / 4 + ((HD / 4) % 8 == 0 ? 4 : 0);
  static constexpr int kQVec = kWarps * KS * 32 * 2;   // all hi, then all lo
  static constexpr int kKVec = kKeys * kLdK;           // per (key, step, t)
  static constexpr int kVVec = (kKeys / 16) * HD * 4;  // per (16-key step, column, t)
  static constexpr int kBytes = (kQVec + 2 * (kKVec + kVVec)) * 16;
  // Staging units per tile: K (key, 16-dim step), V (16-key step, 4 columns, t); 4 float4 each.
  // t innermost in V: neighbouring threads store neighbouring 16-byte slots.
  static constexpr int kKUnits = kKeys * KS, kVUnits = (kKeys / 16) * 4 * (HD / 4);
  static constexpr int kPerK = (kKUnits + kWarps * 32 - 1) / (kWarps * 32);
  static constexpr int kPerV = (kVUnits + kWarps * 32 - 1) / (kWarps * 32);
};

template <int HD, int kWarps, int kKeys>
constexpr int smem_bytes() {
  return Layout<HD, kWarps, kKeys>::kBytes;
}

template <int HD, int kWarps, int kKeys>
__global__ void __launch_bounds__(kWarps * 32)
    attention_mma_k(const float* q, const float* kc, const float* vc, float* out, int m,
                    const int* pos, int heads, int kv_heads, float scale) {
  using L = Layout<HD, kWarps, kKeys>;
  constexpr int kRows = L::kRows, KS = L::KS, LDK = L::kLdK, kThreads = kWarps * 32;
  constexpr int NB = kKeys / 8, OB = HD / 8;
  constexpr int OG = OB <= 8 ? OB : OB / 2;  // output blocks per pass group in P·V
  static_assert(HD % 16 == 0 && kKeys % 16 == 0 && OB % OG == 0 && OG <= 8);
  extern __shared__ uint4 smem_v[];
  uint4* qs = smem_v;           // hi [kWarps][KS][32], then lo
  uint4* kv_s = qs + L::kQVec;  // 2 × (K [kKeys][LDK], V [kKeys/16][HD][4])
  // Blocks start in linear order, x fastest: every head of the heaviest (latest) row block first,
  // then the next — longest-first over the whole grid. With the row block in x, each head's light
  // blocks started before the next head's heavy ones, and the last heavy blocks ran alone at the
  // end (ncu at 2048 tokens: SMs active 76% of the elapsed cycles).
  const int h = blockIdx.x, kvh = h / (heads / kv_heads);
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int pos0 = *pos;
  const int64_t q_stride = static_cast<int64_t>(heads) * HD;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * HD;
  const int block_keys = pos0 + min(i0 + kRows, m);
  const int tiles = (block_keys + kKeys - 1) / kKeys;

  auto kv_row = [&](const float* base, int key, int col) {
    if (key >= block_keys) return make_float4(0.f, 0.f, 0.f, 0.f);
    return *reinterpret_cast<const float4*>(base + static_cast<int64_t>(key) * kv_stride +
                                            kvh * HD + col);
  };
  float4 kr[L::kPerK][4], vr[L::kPerV][4];  // the next tile's K and V in flight
  auto load_kv = [&](int k0) {
#pragma unroll
    for (int i = 0; i < L::kPerK; ++i) {
      const int u = threadIdx.x + i * kThreads;
      if (u >= L::kKUnits) break;
      const int j = u / KS, kk = u % KS;  // key, 16-dim step
#pragma unroll
      for (int f = 0; f < 4; ++f) kr[i][f] = kv_row(kc, k0 + j, kk * 16 + 4 * f);
    }
#pragma unroll
    for (int i = 0; i < L::kPerV; ++i) {
      const int u = threadIdx.x + i * kThreads;
      if (u >= L::kVUnits) break;
      const int c16 = u / (4 * (HD / 4)), c4 = (u / 4) % (HD / 4), tt = u % 4;
      const int key = k0 + c16 * 16 + 2 * tt;  // keys 2t, 2t + 1, 2t + 8, 2t + 9 of the step
      vr[i][0] = kv_row(vc, key, 4 * c4);
      vr[i][1] = kv_row(vc, key + 1, 4 * c4);
      vr[i][2] = kv_row(vc, key + 8, 4 * c4);
      vr[i][3] = kv_row(vc, key + 9, 4 * c4);
    }
  };
  auto store_split = [&](int buf) {
    uint4* ks = kv_s + buf * (L::kKVec + L::kVVec);
    uint4* vs = ks + L::kKVec;
#pragma unroll
    for (int i = 0; i < L::kPerK; ++i) {
      const int u = threadIdx.x + i * kThreads;
      if (u >= L::kKUnits) break;
      const int j = u / KS, kk = u % KS;
      // t: dims 2t, 2t + 1 (f0/f1) and 2t + 8, 2t + 9 (f2/f3) of the 16.
      const float4* f = kr[i];
      uint4* d = ks + j * LDK + kk * 4;
      d[0] = split_b(f[0].x, f[0].y, f[2].x, f[2].y);
      d[1] = split_b(f[0].z, f[0].w, f[2].z, f[2].w);
      d[2] = split_b(f[1].x, f[1].y, f[3].x, f[3].y);
      d[3] = split_b(f[1].z, f[1].w, f[3].z, f[3].w);
    }
#pragma unroll
    for (int i = 0; i < L::kPerV; ++i) {
      const int u = threadIdx.x + i * kThreads;
      if (u >= L::kVUnits) break;
      const int c16 = u / (4 * (HD / 4)), c4 = (u / 4) % (HD / 4), tt = u % 4;
      const float4* r = vr[i];  // keys 2t, 2t + 1, 2t + 8, 2t + 9; columns 4·c4 .. + 3
      uint4* d = vs + (c16 * HD + 4 * c4) * 4 + tt;
      d[0] = split_b(r[0].x, r[1].x, r[2].x, r[3].x);
      d[4] = split_b(r[0].y, r[1].y, r[2].y, r[3].y);
      d[8] = split_b(r[0].z, r[1].z, r[2].z, r[3].z);
      d[12] = split_b(r[0].w, r[1].w, r[2].w, r[3].w);
    }
  };

  // Q·scale in A-fragment order: a0 (g, 2t..), a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8,
  // 2t + 8..) of the warp's rows, as hi then lo.
  for (int e = threadIdx.x; e < kWarps * KS * 32; e += kThreads) {
    const int w = e / (KS * 32), kk = (e / 32) % KS, ln = e % 32;
    const int r = i0 + 16 * w + ln / 4, col = h * HD + kk * 16 + 2 * (ln % 4);
    auto at = [&](int rr, int cc) {
      if (rr >= m) return make_float2(0.f, 0.f);
      const float2 v = *reinterpret_cast<const float2*>(q + rr * q_stride + cc);
      return make_float2(v.x * scale, v.y * scale);
    };
    const float2 a0 = at(r, col), a1 = at(r + 8, col), a2 = at(r, col + 8), a3 = at(r + 8, col + 8);
    uint4 hi, lo;
    split2(a0.x, a0.y, hi.x, lo.x);
    split2(a1.x, a1.y, hi.y, lo.y);
    split2(a2.x, a2.y, hi.z, lo.z);
    split2(a3.x, a3.y, hi.w, lo.w);
    qs[e] = hi;
    qs[kWarps * KS * 32 + e] = lo;
  }
  load_kv(0);
  store_split(0);
  if (tiles > 1) load_kv(kKeys);
  __syncthreads();

  const int r0 = warp * 16;
  const int row_lo = i0 + r0 + g, row_hi = row_lo + 8;  // this thread's two query rows
  float o[OB][4];
#pragma unroll
  for (int b = 0; b < OB; ++b) o[b][0] = o[b][1] = o[b][2] = o[b][3] = 0.0f;
  float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};

  for (int tile = 0; tile < tiles; ++tile) {
    const int k0 = tile * kKeys;
    const uint4* ks = kv_s + (tile & 1) * (L::kKVec + L::kVVec);
    const uint4* vs = ks + L::kKVec;
    // A warp whose rows all precede this tile has nothing to add (causal).
    if (k0 <= pos0 + min(i0 + r0 + 15, m - 1)) {
      float s[NB][4];
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll 2
      for (int kk = 0; kk < KS; ++kk) {
        const uint4 a_hi = qs[(warp * KS + kk) * 32 + lane];
        const uint4 a_lo = qs[kWarps * KS * 32 + (warp * KS + kk) * 32 + lane];
        uint4 b[NB];
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) b[nb] = ks[(nb * 8 + g) * LDK + kk * 4 + t];
        mma_2xf16_n(s, 0, a_hi, a_lo, b);
      }
      // Fragment (nb, c): row lo (c < 2) or hi, key k0 + 8·nb + 2t + (c & 1). (Masking only the
      // tiles that reach the diagonal, behind a warp-uniform branch, spilled registers.)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = half ? row_hi : row_lo;
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = k0 + nb * 8 + 2 * t + c;
            float& v = s[nb][2 * half + c];
            v = (row < m && key <= pos0 + row) ? v : -INFINITY;
          }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float tile_mx = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          tile_mx = fmaxf(tile_mx, s[nb][2 * half]);
          tile_mx = fmaxf(tile_mx, s[nb][2 * half + 1]);
        }
        tile_mx = fmaxf(tile_mx, __shfl_xor_sync(0xffffffffu, tile_mx, 1));
        tile_mx = fmaxf(tile_mx, __shfl_xor_sync(0xffffffffu, tile_mx, 2));
        const float m_new = fmaxf(mx[half], tile_mx);
        // exp2f(-inf) = 0 takes care of masked keys; a row with no key yet (m_new = -inf, rows
        // past m) subtracts 0 instead, so that -inf - -inf never makes a NaN.
        const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
        const float corr = exp2f(mx[half] - m_ref);
        float rs = 0.0f;
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            float& v = s[nb][2 * half + c];  // becomes p
            v = exp2f(v - m_ref);
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
      // O += P·V over 16-key steps: the A fragment is S blocks 2c and 2c + 1 (a0 = row lo, keys
      // 2t, 2t + 1; a1 = row hi; a2, a3 = the same 8 keys further).
#pragma unroll
      for (int c16 = 0; c16 < NB / 2; ++c16) {
        uint4 p_hi, p_lo;
        split2(s[2 * c16][0], s[2 * c16][1], p_hi.x, p_lo.x);
        split2(s[2 * c16][2], s[2 * c16][3], p_hi.y, p_lo.y);
        split2(s[2 * c16 + 1][0], s[2 * c16 + 1][1], p_hi.z, p_lo.z);
        split2(s[2 * c16 + 1][2], s[2 * c16 + 1][3], p_hi.w, p_lo.w);
        const uint4* vb = vs + (c16 * HD + g) * 4 + t;
#pragma unroll
        for (int b0 = 0; b0 < OB; b0 += OG) {
          uint4 b[OG];
#pragma unroll
          for (int i = 0; i < OG; ++i) b[i] = vb[(b0 + i) * 8 * 4];
          mma_2xf16_n(o, b0, p_hi, p_lo, b);
        }
      }
    }
    // The other buffer was last read in the previous iteration, before its closing barrier.
    if (tile + 1 < tiles) store_split((tile + 1) & 1);
    if (tile + 2 < tiles) load_kv(k0 + 2 * kKeys);
    __syncthreads();
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
  const dim3 grid(static_cast<unsigned>(heads),
                  static_cast<unsigned>((m + 16 * kWarps - 1) / (16 * kWarps)));
  launch_with_smem<attention_mma_k<HD, kWarps, kKeys>>(
      grid, dim3(kWarps * 32), smem_bytes<HD, kWarps, kKeys>(), s, q, k_cache, v_cache, out,
      static_cast<int>(m), pos, static_cast<int>(heads), static_cast<int>(kv_heads),
      static_cast<float>(static_cast<double>(scale) * 1.4426950408889634));  // log2(e)
}

}  // namespace

bool attention_mma_supports(int64_t head_dim) {
  int need = 0;
  const bool has = dispatch_mma_head_dim(
      head_dim, [&](auto hd) { need = smem_bytes<decltype(hd)::value, kBlockWarps, kTileKeys>(); });
  return has && need <= max_dynamic_smem();
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
