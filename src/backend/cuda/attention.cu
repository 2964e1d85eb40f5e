// Causal GQA attention of the CUDA engine (engine_ops.cuh) over the fp32 KV cache, in fp32 with an
// online softmax, for query rows at positions *pos .. *pos + m:
//  - decode (m < kPrefillMinRows): split-key ("flash-decoding"): up to kSplits blocks per (row,
//    head) each walk a chunk of the keys with 4 warps, and the last of them to finish merges their
//    partial (max, sum, weighted V). One block per (row, head) walking all keys used 32 of 132 SMs
//    and took 100 µs per layer at 512 keys on the H200;
//  - prefill: on the tensor cores, operands split in two FP16 parts (attention_mma.cu), for the
//    common head dims; else blocks of 64 query rows × 64-key tiles staged in shared memory (K
//    transposed), S = Q·Kᵀ and O += P·V register-tiled (4 rows × 4 keys, 4 rows × head_dim/16
//    columns per thread) on the fp32 cores. Head dims other than 16·{1,2,4,5,6,8,16} use a
//    simpler kernel.
// Summation orders differ from the CPU engine, so results agree to fp32 rounding, not bit for bit.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/kernel_launch.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/quant_math.cuh"

namespace sq::cuda::ops {
namespace {

constexpr int kPrefillMinRows = 8;
AttentionPrefill g_prefill_override = AttentionPrefill::kAuto;
constexpr int kSplits = 32, kSplitMinKeys = 32;  // a split walks at least 32 keys
constexpr int kDecWarps = 4;

// Decode: block (row t, head h, split s) over keys [s·chunk, min((s+1)·chunk, n_keys)). Lane l
// owns the float4 groups l + 32·g (g < kGroups) of head_dim, so one K or V row is one 16-byte
// load per lane. A warp takes kKeys keys per step and issues their K and V loads together (the V
// rows do not depend on the scores), so a step costs one memory latency, not two. The block's
// partial state (max, sum, Σ p·v) goes to ws; the last block of (t, h) to finish, found with a
// counter in ws that it resets for the next launch, merges the partials and writes the output.
// A separate merge kernel cost a launch and ~5 µs per layer on the H200.
template <int kGroups>
__global__ void __launch_bounds__(kDecWarps * 32)
    attention_decode_k(const float* q, const float* kc, const float* vc, const int* pos, int heads,
                       int kv_heads, int hd, float scale, float2* ws_ml, float* ws_acc,
                       unsigned* counters, float* head_max, float* out, int8_t* q8,
                       float* q8_scales) {
  pdl_trigger();  // the o_proj GEMV may launch and stream its weights meanwhile
  pdl_wait();     // launched with PDL: the RoPE kernel wrote q and the cache
  constexpr int kKeys = 8 / kGroups;
  __shared__ float sm_mx[kDecWarps], sm_sum[kDecWarps];
  __shared__ float4 sm_acc[kDecWarps][kGroups * 32];
  __shared__ bool is_last;
  const int t = blockIdx.x / heads, h = blockIdx.x % heads, kvh = h / (heads / kv_heads);
  const int split = blockIdx.y;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n_keys = *pos + t + 1;
  const int chunk = max(kSplitMinKeys, (n_keys + kSplits - 1) / kSplits);
  const int n_active = (n_keys + chunk - 1) / chunk;
  if (split >= n_active) return;  // no keys here; the merge reads only the active splits
  const int k_begin = split * chunk, k_end = min(n_keys, k_begin + chunk);
  const int groups = hd / 4;  // head_dim % 4 == 0 (attention_supports)
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * hd;
  const float4* q4 =
      reinterpret_cast<const float4*>(q + (static_cast<int64_t>(t) * heads + h) * hd);
  const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  float4 qv[kGroups], acc[kGroups];
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    const int e = lane + 32 * g;
    qv[g] = e < groups ? q4[e] : zero4;
    acc[g] = zero4;
  }
  float mx = -INFINITY, sum = 0.0f;
  for (int j0 = k_begin + w * kKeys; j0 < k_end; j0 += kDecWarps * kKeys) {
    float4 kr[kKeys][kGroups], vr[kKeys][kGroups];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int64_t row = min(j0 + u, k_end - 1) * kv_stride + kvh * hd;
      const float4* k4 = reinterpret_cast<const float4*>(kc + row);
      const float4* v4 = reinterpret_cast<const float4*>(vc + row);
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const int e = lane + 32 * g;
        kr[u][g] = e < groups ? k4[e] : zero4;
        vr[u][g] = e < groups ? v4[e] : zero4;
      }
    }
    float sc[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      float sd = 0.0f;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        sd += qv[g].x * kr[u][g].x;
        sd += qv[g].y * kr[u][g].y;
        sd += qv[g].z * kr[u][g].z;
        sd += qv[g].w * kr[u][g].w;
      }
      sc[u] = sd;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
#pragma unroll
      for (int u = 0; u < kKeys; ++u) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], off);
    float step_mx = -INFINITY;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      sc[u] = j0 + u < k_end ? sc[u] * scale : -INFINITY;
      step_mx = fmaxf(step_mx, sc[u]);
    }
    const float mx_new = fmaxf(mx, step_mx);
    const float corr = expf(mx - mx_new);
    sum *= corr;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      acc[g].x *= corr, acc[g].y *= corr, acc[g].z *= corr, acc[g].w *= corr;
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const float p = sc[u] == -INFINITY ? 0.0f : expf(sc[u] - mx_new);
      sum += p;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        acc[g].x += p * vr[u][g].x, acc[g].y += p * vr[u][g].y;
        acc[g].z += p * vr[u][g].z, acc[g].w += p * vr[u][g].w;
      }
    }
    mx = mx_new;
  }
  if (lane == 0) {
    sm_mx[w] = mx;
    sm_sum[w] = sum;
  }
#pragma unroll
  for (int g = 0; g < kGroups; ++g) sm_acc[w][lane + 32 * g] = acc[g];
  __syncthreads();
  float gmx = -INFINITY;
  for (int k = 0; k < kDecWarps; ++k) gmx = fmaxf(gmx, sm_mx[k]);
  float f[kDecWarps], total = 0.0f;
  for (int k = 0; k < kDecWarps; ++k) {
    f[k] = sm_sum[k] > 0.0f ? expf(sm_mx[k] - gmx) : 0.0f;  // warps without keys contribute 0
    total += sm_sum[k] * f[k];
  }
  const int64_t part = static_cast<int64_t>(blockIdx.x) * kSplits + split;
  if (threadIdx.x == 0) ws_ml[part] = make_float2(gmx, total);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int k = 0; k < kDecWarps; ++k) {
      const float4 a = sm_acc[k][d / 4];
      o += (d % 4 == 0 ? a.x : d % 4 == 1 ? a.y : d % 4 == 2 ? a.z : a.w) * f[k];
    }
    ws_acc[part * hd + d] = o;
  }
  // Publish the partial, then count it (the threadFenceReduction pattern).
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&counters[blockIdx.x], 1u) == unsigned(n_active - 1);
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;  // ready for the next launch (graph replays)
  // The merge, with every load of the partials in flight at once: walking the splits one load at
  // a time made this tail cost more than the keys themselves.
  __shared__ float sm_f[kSplits];
  __shared__ float sm_inv;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kSplits;
  if (w == 0) {
    const float2 ml = lane < n_active ? __ldcg(&ws_ml[base + lane]) : make_float2(-INFINITY, 0.0f);
    float mmx = ml.y > 0.0f ? ml.x : -INFINITY;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) mmx = fmaxf(mmx, __shfl_xor_sync(0xffffffffu, mmx, off));
    const float f = ml.y > 0.0f ? expf(ml.x - mmx) : 0.0f;
    float tot = ml.y * f;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) tot += __shfl_xor_sync(0xffffffffu, tot, off);
    sm_f[lane] = f;
    if (lane == 0) sm_inv = 1.0f / tot;
  }
  __syncthreads();
  const float inv = sm_inv;
  float amax = 0.0f;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a[kSplits];
#pragma unroll
    for (int s = 0; s < kSplits; ++s)
      a[s] = s < n_active ? __ldcg(&ws_acc[(base + s) * hd + d]) : 0.0f;
    float o = 0.0f;
#pragma unroll
    for (int s = 0; s < kSplits; ++s) o += a[s] * sm_f[s];
    o *= inv;
    out[(static_cast<int64_t>(t) * heads + h) * hd + d] = o;
    amax = fmaxf(amax, fabsf(o));
  }
  // Per-token quantization of the row, exactly as quantize_per_token_s8 (NUMERICS §1), which
  // saves the o_proj input its own kernel: each head publishes the abs-max of its outputs, and
  // the row's last head to finish quantizes the row.
  if (!q8) return;
#pragma unroll
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  if (lane == 0) sm_mx[w] = amax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float hm = 0.0f;
    for (int k = 0; k < kDecWarps; ++k) hm = fmaxf(hm, sm_mx[k]);
    head_max[blockIdx.x] = hm;
  }
  unsigned* row_counter = counters + kPrefillMinRows * heads + t;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(row_counter, 1u) == unsigned(heads - 1);
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  if (threadIdx.x == 0) *row_counter = 0;
  amax = 0.0f;
  for (int i = threadIdx.x; i < heads; i += blockDim.x)
    amax = fmaxf(amax, __ldcg(&head_max[t * heads + i]));
#pragma unroll
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  __syncthreads();  // sm_mx was read above
  if (lane == 0) sm_mx[w] = amax;
  __syncthreads();
  amax = 0.0f;
  for (int k = 0; k < kDecWarps; ++k) amax = fmaxf(amax, sm_mx[k]);
  const float qscale = scale_from_absmax(amax);
  if (threadIdx.x == 0) q8_scales[t] = qscale;
  const int n4 = heads * hd / 4;  // head_dim % 4 == 0
  const float4* row4 = reinterpret_cast<const float4*>(out + static_cast<int64_t>(t) * heads * hd);
  char4* row_q8 = reinterpret_cast<char4*>(q8 + static_cast<int64_t>(t) * heads * hd);
  auto to_q = [&](float x) { return static_cast<signed char>(quant_level(x, qscale)); };
  constexpr int kUnroll = 8;
  for (int j0 = threadIdx.x; j0 < n4; j0 += kUnroll * blockDim.x) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * blockDim.x;
      v[u] = j < n4 ? __ldcg(row4 + j) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * blockDim.x;
      if (j < n4) row_q8[j] = make_char4(to_q(v[u].x), to_q(v[u].y), to_q(v[u].z), to_q(v[u].w));
    }
  }
}

// Prefill, register-tiled: block (64 query rows, head), 256 threads as 16 × 16 (ty, tx). Thread
// (ty, tx) owns rows 4·ty .. 4·ty+3; in S its keys are 4·tx .. 4·tx+3 of the tile, in O its
// columns col(c). Heavy (late) row blocks are launched first.
constexpr int kBr = 64, kBc = 64, kPs = kBr + 4, kTiledThreads = 256;

template <int KC>
constexpr int tiled_smem_bytes() {
  return (16 * KC * (kBr + kBc) + kBc * 16 * KC + kBc * kPs) * 4;
}

template <int KC>
__device__ __forceinline__ int out_col(int tx, int c) {
  // Groups of 4 adjacent columns when possible (float4 reads of V), else stride 16.
  if constexpr (KC % 4 == 0) {
    return (c / 4) * 64 + tx * 4 + (c % 4);
  } else {
    return tx + 16 * c;
  }
}

template <int KC>
__global__ void __launch_bounds__(kTiledThreads)
    attention_tiled_k(const float* q, const float* kc, const float* vc, float* out, int m,
                      const int* pos, int heads, int kv_heads, float scale) {
  constexpr int HD = 16 * KC;
  extern __shared__ float4 sm4[];
  float* qt = reinterpret_cast<float*>(sm4);  // [HD][kBr]
  float* kt = qt + HD * kBr;                  // [HD][kBc]
  float* vs = kt + HD * kBc;                  // [kBc][HD]
  float* ps = vs + kBc * HD;                  // [kBc][kPs]: P transposed
  // Longest first over the whole grid (x fastest: all heads of the latest row block first).
  const int h = blockIdx.x, kvh = h / (heads / kv_heads);
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBr;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int pos0 = *pos;
  const int64_t q_stride = static_cast<int64_t>(heads) * HD;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * HD;

  // Q transposed; consecutive threads take consecutive rows (conflict-free stores).
  for (int e = tid; e < kBr * (HD / 4); e += kTiledThreads) {
    const int i = e % kBr, d4 = e / kBr;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i0 + i < m) v = *reinterpret_cast<const float4*>(q + (i0 + i) * q_stride + h * HD + d4 * 4);
    qt[(d4 * 4 + 0) * kBr + i] = v.x;
    qt[(d4 * 4 + 1) * kBr + i] = v.y;
    qt[(d4 * 4 + 2) * kBr + i] = v.z;
    qt[(d4 * 4 + 3) * kBr + i] = v.w;
  }
  float o[4][KC], mrow[4], lrow[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    mrow[r] = -INFINITY;
    lrow[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < KC; ++c) o[r][c] = 0.0f;
  }
  const int block_keys = pos0 + min(i0 + kBr, m);
  for (int k0 = 0; k0 < block_keys; k0 += kBc) {
    __syncthreads();  // the previous tile is no longer read
    for (int e = tid; e < kBc * (HD / 4); e += kTiledThreads) {
      const int j = e % kBc, d4 = e / kBc;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (k0 + j < block_keys)
        v = *reinterpret_cast<const float4*>(kc + (k0 + j) * kv_stride + kvh * HD + d4 * 4);
      kt[(d4 * 4 + 0) * kBc + j] = v.x;
      kt[(d4 * 4 + 1) * kBc + j] = v.y;
      kt[(d4 * 4 + 2) * kBc + j] = v.z;
      kt[(d4 * 4 + 3) * kBc + j] = v.w;
    }
    for (int e = tid; e < kBc * (HD / 4); e += kTiledThreads) {
      const int j = e / (HD / 4), d4 = e % (HD / 4);
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (k0 + j < block_keys)
        v = *reinterpret_cast<const float4*>(vc + (k0 + j) * kv_stride + kvh * HD + d4 * 4);
      *reinterpret_cast<float4*>(vs + j * HD + d4 * 4) = v;
    }
    __syncthreads();
    float s[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[r][c] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HD; ++d) {
      const float4 a = *reinterpret_cast<const float4*>(qt + d * kBr + ty * 4);
      const float4 b = *reinterpret_cast<const float4*>(kt + d * kBc + tx * 4);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) s[r][c] += av[r] * bv[c];
    }
    float p[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = i0 + ty * 4 + r;
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int key = k0 + tx * 4 + c;
        s[r][c] = (i < m && key <= pos0 + i) ? s[r][c] * scale : -INFINITY;
        mx = fmaxf(mx, s[r][c]);
      }
#pragma unroll
      for (int off = 8; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(mrow[r], mx);
      const float corr = m_new == -INFINITY ? 1.0f : expf(mrow[r] - m_new);
      float rs = 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        p[r][c] = s[r][c] == -INFINITY ? 0.0f : expf(s[r][c] - m_new);
        rs += p[r][c];
      }
#pragma unroll
      for (int off = 8; off > 0; off /= 2) rs += __shfl_xor_sync(0xffffffffu, rs, off);
      lrow[r] = lrow[r] * corr + rs;
      mrow[r] = m_new;
#pragma unroll
      for (int c = 0; c < KC; ++c) o[r][c] *= corr;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
      *reinterpret_cast<float4*>(ps + (tx * 4 + c) * kPs + ty * 4) =
          make_float4(p[0][c], p[1][c], p[2][c], p[3][c]);
    __syncthreads();
    const int n_here = min(kBc, block_keys - k0);
    for (int j = 0; j < n_here; ++j) {
      const float4 pv = *reinterpret_cast<const float4*>(ps + j * kPs + ty * 4);
      const float pr[4] = {pv.x, pv.y, pv.z, pv.w};
      float v[KC];
      if constexpr (KC % 4 == 0) {
#pragma unroll
        for (int g = 0; g < KC / 4; ++g) {
          const float4 v4 = *reinterpret_cast<const float4*>(vs + j * HD + g * 64 + tx * 4);
          v[4 * g] = v4.x, v[4 * g + 1] = v4.y, v[4 * g + 2] = v4.z, v[4 * g + 3] = v4.w;
        }
      } else {
#pragma unroll
        for (int c = 0; c < KC; ++c) v[c] = vs[j * HD + out_col<KC>(tx, c)];
      }
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < KC; ++c) o[r][c] += pr[r] * v[c];
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = i0 + ty * 4 + r;
    if (i >= m) continue;
    const float inv = 1.0f / lrow[r];
#pragma unroll
    for (int c = 0; c < KC; ++c) out[i * q_stride + h * HD + out_col<KC>(tx, c)] = o[r][c] * inv;
  }
}

// The head dims the tiled kernel is instantiated for (KC = head_dim / 16).
template <typename F>
bool dispatch_tiled_head_dim(int64_t head_dim, F&& f) {
  return dispatch_head_dim<16, 32, 64, 80, 96, 128, 256>(head_dim, f);
}

// Prefill fallback for other head dims (≤ 128): 16 query rows per block, one warp per row walking
// 32-key tiles of K and V staged in shared memory.
constexpr int kPfRows = 16, kPfKeys = 32, kPfMaxDim = 128;
__global__ void __launch_bounds__(kPfRows * 32)
    attention_prefill_k(const float* q, const float* kc, const float* vc, float* out, int m,
                        const int* pos, int heads, int kv_heads, int hd, float scale) {
  const int pos0 = *pos;
  __shared__ float ks[kPfKeys][kPfMaxDim + 1], vs[kPfKeys][kPfMaxDim];
  const int h = blockIdx.y, kvh = h / (heads / kv_heads);
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kPfRows + w;
  const int64_t q_stride = static_cast<int64_t>(heads) * hd;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * hd;
  constexpr int kPer = kPfMaxDim / 32;
  float qv[kPer], acc[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    qv[i] = t < m && d < hd ? q[t * q_stride + h * hd + d] : 0.0f;
    acc[i] = 0.0f;
  }
  float mx = -INFINITY, sum = 0.0f;
  const int n_keys = pos0 + t + 1;  // this row's causal limit
  const int last_row = min(m - 1, static_cast<int>(blockIdx.x) * kPfRows + kPfRows - 1);
  const int block_keys = pos0 + last_row + 1;
  for (int k0 = 0; k0 < block_keys; k0 += kPfKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int e = threadIdx.x; e < kPfKeys * hd; e += blockDim.x) {
      const int r = e / hd, d = e % hd, j = k0 + r;
      const bool ok = j < block_keys;
      ks[r][d] = ok ? kc[j * kv_stride + kvh * hd + d] : 0.0f;
      vs[r][d] = ok ? vc[j * kv_stride + kvh * hd + d] : 0.0f;
    }
    __syncthreads();
    if (t >= m) continue;
    const int n_here = min(kPfKeys, n_keys - k0);
    for (int r0 = 0; r0 < n_here; r0 += 8) {
      float sc[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        float sdot = 0.0f;
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) sdot += qv[i] * ks[(r0 + u) % kPfKeys][d];
        }
        sc[u] = sdot;
      }
#pragma unroll
      for (int off = 16; off > 0; off /= 2)
#pragma unroll
        for (int u = 0; u < 8; ++u) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], off);
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (r0 + u >= n_here) break;
        const float sv = sc[u] * scale;
        const float mx_new = fmaxf(mx, sv);
        const float corr = expf(mx - mx_new), p = expf(sv - mx_new);
        sum = sum * corr + p;
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) acc[i] = acc[i] * corr + p * vs[r0 + u][d];
        }
        mx = mx_new;
      }
    }
  }
  if (t >= m) return;
  const float inv = 1.0f / sum;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[t * q_stride + h * hd + d] = acc[i] * inv;
  }
}

}  // namespace

int64_t attention_workspace_floats(int64_t heads, int64_t head_dim) {
  // float2 (max, sum) + head_dim accumulators per (row, head, split); counters, one per (row,
  // head) and one per row; an output abs-max per (row, head); for decode-sized m.
  return static_cast<int64_t>(kPrefillMinRows) * (heads * (kSplits * (2 + head_dim) + 2) + 1);
}

bool attention_supports(int64_t head_dim) {
  bool fits = false;
  const bool tiled = dispatch_tiled_head_dim(head_dim, [&](auto hd) {
    fits = tiled_smem_bytes<decltype(hd)::value / 16>() <= max_dynamic_smem();
  });
  return (tiled && fits) || (head_dim <= kPfMaxDim && head_dim % 4 == 0);
}

void set_attention_prefill_override(AttentionPrefill k) { g_prefill_override = k; }

bool attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
               float* ws, cudaStream_t s, int8_t* q8, float* q8_scales) {
  if (!q8_scales) q8 = nullptr;  // both or neither
  if (m < kPrefillMinRows) {
    auto* ws_ml = reinterpret_cast<float2*>(ws);
    float* ws_acc = ws + 2 * kPrefillMinRows * heads * kSplits;
    auto* counters =
        reinterpret_cast<unsigned*>(ws_acc + kPrefillMinRows * heads * kSplits * head_dim);
    float* head_max = reinterpret_cast<float*>(counters + kPrefillMinRows * (heads + 1));
    const dim3 grid(static_cast<unsigned>(m * heads), kSplits);
    auto go = [&](auto kernel) {
      launch_pdl(kernel, grid, dim3(kDecWarps * 32), s, q, k_cache, v_cache, pos,
                 static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<int>(head_dim),
                 scale, ws_ml, ws_acc, counters, head_max, out, q8, q8_scales);
    };
    if (head_dim <= 128) {
      go(attention_decode_k<1>);
    } else {
      go(attention_decode_k<2>);
    }
    SQ_CUDA_CHECK(cudaGetLastError());
    return q8 != nullptr;
  }
  // Tensor cores (two-part FP16 split) where that kernel has the head dim; SQ_CUDA_ATTN=fp32 (or
  // the test override) keeps the CUDA-core kernels.
  static const bool fp32_env = [] {
    const char* env = std::getenv("SQ_CUDA_ATTN");
    return env && std::string(env) == "fp32";
  }();
  const bool fp32_cores = g_prefill_override == AttentionPrefill::kFp32Cores ||
                          (g_prefill_override == AttentionPrefill::kAuto && fp32_env);
  if (!fp32_cores && attention_mma_supports(head_dim)) {
    attention_mma(q, k_cache, v_cache, out, m, pos, heads, kv_heads, head_dim, scale, s);
    return false;
  }
  // The fp32-core tiled kernel where its blocks fit the device's shared memory (115 KB at head
  // dim 128: not on Ada), else the simple one.
  bool fits = true;
  const bool tiled = dispatch_tiled_head_dim(head_dim, [&](auto hd) {
    constexpr int kKc = decltype(hd)::value / 16;
    fits = tiled_smem_bytes<kKc>() <= max_dynamic_smem();
    if (!fits) return;
    const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>((m + kBr - 1) / kBr));
    launch_with_smem<attention_tiled_k<kKc>>(
        grid, dim3(kTiledThreads), tiled_smem_bytes<kKc>(), s, q, k_cache, v_cache, out,
        static_cast<int>(m), pos, static_cast<int>(heads), static_cast<int>(kv_heads), scale);
  });
  if (tiled && fits) return false;
  if (!attention_supports(head_dim))
    throw std::runtime_error("attention: head_dim " + std::to_string(head_dim) +
                             " is not supported on the GPU");
  const dim3 grid(static_cast<unsigned>((m + kPfRows - 1) / kPfRows), static_cast<unsigned>(heads));
  attention_prefill_k<<<grid, kPfRows * 32, 0, s>>>(
      q, k_cache, v_cache, out, static_cast<int>(m), pos, static_cast<int>(heads),
      static_cast<int>(kv_heads), static_cast<int>(head_dim), scale);
  SQ_CUDA_CHECK(cudaGetLastError());
  return false;
}

}  // namespace sq::cuda::ops
