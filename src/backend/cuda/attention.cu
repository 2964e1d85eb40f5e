// Causal GQA attention of the CUDA engine (engine_ops.cuh) over the fp32 KV cache, in fp32 with an
// online softmax, for query rows at positions *pos .. *pos + m:
//  - decode (m < kPrefillMinRows): split-key ("flash-decoding"): up to kSplits blocks per (row,
//    head) each walk a chunk of the keys with 4 warps, then a merge kernel combines their partial
//    (max, sum, weighted V). One block per (row, head) walking all keys used 32 of 132 SMs and
//    took 100 µs per layer at 512 keys on the H200, the split version 30 µs before its V loads were
//    batched per step of 8 keys;
//  - prefill: on the tensor cores in 3xTF32 (attention_mma.cu) for the common head dims; else
//    blocks of 64 query rows × 64-key tiles staged in shared memory (K transposed),
//    S = Q·Kᵀ and O += P·V register-tiled (4 rows × 4 keys, 4 rows × head_dim/16 columns per
//    thread) on the fp32 cores. Head dims other than 16·{1,2,4,5,6,8,16} use a simpler kernel.
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

namespace sq::cuda::ops {
namespace {

constexpr int kPrefillMinRows = 8;
constexpr int kSplits = 32, kSplitMinKeys = 32;  // a split walks at least 32 keys
constexpr int kDecWarps = 4, kKeysPerStep = 8;
constexpr int kMaxPerLane = 8;  // head_dim ≤ 256

// Block (row t, head h, split s) over keys [s·chunk, min((s+1)·chunk, n_keys)); writes its
// unnormalized partial state to ws (ml: max and sum; acc: Σ p·v).
__global__ void __launch_bounds__(kDecWarps * 32)
    attention_split_k(const float* q, const float* kc, const float* vc, const int* pos, int heads,
                      int kv_heads, int hd, float scale, float2* ws_ml, float* ws_acc) {
  __shared__ float sm_mx[kDecWarps], sm_sum[kDecWarps];
  __shared__ float sm_acc[kDecWarps][kMaxPerLane * 32];
  const int t = blockIdx.x / heads, h = blockIdx.x % heads, kvh = h / (heads / kv_heads);
  const int split = blockIdx.y;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n_keys = *pos + t + 1;
  const int chunk = max(kSplitMinKeys, (n_keys + kSplits - 1) / kSplits);
  const int k_begin = split * chunk, k_end = min(n_keys, k_begin + chunk);
  const int64_t part = static_cast<int64_t>(blockIdx.x) * kSplits + split;
  if (k_begin >= n_keys) {  // nothing to do: an empty partial
    if (threadIdx.x == 0) ws_ml[part] = make_float2(-INFINITY, 0.0f);
    return;
  }
  const int64_t q_stride = static_cast<int64_t>(heads) * hd;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * hd;
  float qv[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? q[t * q_stride + h * hd + d] : 0.0f;
    acc[i] = 0.0f;
  }
  float mx = -INFINITY, sum = 0.0f;
  for (int j0 = k_begin + w * kKeysPerStep; j0 < k_end; j0 += kDecWarps * kKeysPerStep) {
    float sc[kKeysPerStep];
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const int j = min(j0 + u, k_end - 1);
      const float* kr = kc + j * kv_stride + kvh * hd;
      float sd = 0.0f;
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) sd += qv[i] * kr[d];
      }
      sc[u] = sd;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], off);
    // The step's keys update the softmax state together, so that their V rows are independent
    // loads in flight at once (one key at a time exposed the load latency per key).
    float step_mx = -INFINITY;
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      sc[u] = j0 + u < k_end ? sc[u] * scale : -INFINITY;
      step_mx = fmaxf(step_mx, sc[u]);
    }
    const float mx_new = fmaxf(mx, step_mx);
    const float corr = expf(mx - mx_new);
    sum *= corr;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) acc[i] *= corr;
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const float p = sc[u] == -INFINITY ? 0.0f : expf(sc[u] - mx_new);
      sum += p;
      const float* vr = vc + min(j0 + u, k_end - 1) * kv_stride + kvh * hd;
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) acc[i] += p * vr[d];
      }
    }
    mx = mx_new;
  }
  if (lane == 0) {
    sm_mx[w] = mx;
    sm_sum[w] = sum;
  }
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) sm_acc[w][lane + 32 * i] = acc[i];
  __syncthreads();
  float gmx = -INFINITY;
  for (int k = 0; k < kDecWarps; ++k) gmx = fmaxf(gmx, sm_mx[k]);
  float f[kDecWarps], total = 0.0f;
  for (int k = 0; k < kDecWarps; ++k) {
    f[k] = sm_sum[k] > 0.0f ? expf(sm_mx[k] - gmx) : 0.0f;  // warps without keys contribute 0
    total += sm_sum[k] * f[k];
  }
  if (threadIdx.x == 0) ws_ml[part] = make_float2(gmx, total);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int k = 0; k < kDecWarps; ++k) o += sm_acc[k][d] * f[k];
    ws_acc[part * hd + d] = o;
  }
}

// One block per (row, head), one thread per output element: combines the splits' partials.
__global__ void attention_merge_k(const float2* ws_ml, const float* ws_acc, float* out, int heads,
                                  int hd) {
  const int t = blockIdx.x / heads, h = blockIdx.x % heads;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kSplits;
  float gmx = -INFINITY;
  for (int s = 0; s < kSplits; ++s)
    if (ws_ml[base + s].y > 0.0f) gmx = fmaxf(gmx, ws_ml[base + s].x);
  float total = 0.0f;
  for (int s = 0; s < kSplits; ++s) {
    const float2 ml = ws_ml[base + s];
    if (ml.y > 0.0f) total += ml.y * expf(ml.x - gmx);
  }
  const float inv = 1.0f / total;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < kSplits; ++s) {
      const float2 ml = ws_ml[base + s];
      if (ml.y > 0.0f) o += ws_acc[(base + s) * hd + d] * expf(ml.x - gmx);
    }
    out[(static_cast<int64_t>(t) * heads + h) * hd + d] = o * inv;
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
  const int h = blockIdx.y, kvh = h / (heads / kv_heads);
  const int i0 = (gridDim.x - 1 - blockIdx.x) * kBr;
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

template <int KC>
void launch_tiled(const float* q, const float* kc, const float* vc, float* out, int64_t m,
                  const int* pos, int64_t heads, int64_t kv_heads, float scale, cudaStream_t s) {
  constexpr int bytes = tiled_smem_bytes<KC>();
  static const bool attr_set = [] {
    SQ_CUDA_CHECK(cudaFuncSetAttribute(attention_tiled_k<KC>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)attr_set;
  const dim3 grid(static_cast<unsigned>((m + kBr - 1) / kBr), static_cast<unsigned>(heads));
  attention_tiled_k<KC><<<grid, kTiledThreads, bytes, s>>>(q, kc, vc, out, static_cast<int>(m), pos,
                                                           static_cast<int>(heads),
                                                           static_cast<int>(kv_heads), scale);
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
  // float2 (max, sum) + head_dim accumulators per (row, head, split), for decode-sized m.
  return static_cast<int64_t>(kPrefillMinRows) * heads * kSplits * (2 + head_dim);
}

bool attention_supports(int64_t head_dim) {
  switch (head_dim) {
    case 16:
    case 32:
    case 64:
    case 80:
    case 96:
    case 128:
    case 256:
      return true;
    default:
      return head_dim <= kPfMaxDim && head_dim % 4 == 0;
  }
}

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               const int* pos, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
               float* ws, cudaStream_t s) {
  if (m < kPrefillMinRows) {
    auto* ws_ml = reinterpret_cast<float2*>(ws);
    float* ws_acc = ws + 2 * kPrefillMinRows * heads * kSplits;
    const dim3 grid(static_cast<unsigned>(m * heads), kSplits);
    attention_split_k<<<grid, kDecWarps * 32, 0, s>>>(
        q, k_cache, v_cache, pos, static_cast<int>(heads), static_cast<int>(kv_heads),
        static_cast<int>(head_dim), scale, ws_ml, ws_acc);
    SQ_CUDA_CHECK(cudaGetLastError());
    attention_merge_k<<<static_cast<unsigned>(m * heads),
                        static_cast<unsigned>(std::min<int64_t>(head_dim, 256)), 0, s>>>(
        ws_ml, ws_acc, out, static_cast<int>(heads), static_cast<int>(head_dim));
    SQ_CUDA_CHECK(cudaGetLastError());
    return;
  }
  // Tensor cores (3xTF32) where that kernel has the head dim; SQ_CUDA_ATTN=fp32 keeps the
  // CUDA-core kernels (for comparisons).
  static const bool fp32_cores = [] {
    const char* env = std::getenv("SQ_CUDA_ATTN");
    return env && std::string(env) == "fp32";
  }();
  if (!fp32_cores && attention_mma_supports(head_dim))
    return attention_mma(q, k_cache, v_cache, out, m, pos, heads, kv_heads, head_dim, scale, s);
  switch (head_dim) {
    case 16:
      launch_tiled<1>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 32:
      launch_tiled<2>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 64:
      launch_tiled<4>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 80:
      launch_tiled<5>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 96:
      launch_tiled<6>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 128:
      launch_tiled<8>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    case 256:
      launch_tiled<16>(q, k_cache, v_cache, out, m, pos, heads, kv_heads, scale, s);
      break;
    default: {
      if (!attention_supports(head_dim))
        throw std::runtime_error("attention: head_dim " + std::to_string(head_dim) +
                                 " is not supported on the GPU");
      const dim3 grid(static_cast<unsigned>((m + kPfRows - 1) / kPfRows),
                      static_cast<unsigned>(heads));
      attention_prefill_k<<<grid, kPfRows * 32, 0, s>>>(
          q, k_cache, v_cache, out, static_cast<int>(m), pos, static_cast<int>(heads),
          static_cast<int>(kv_heads), static_cast<int>(head_dim), scale);
    }
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sq::cuda::ops
