// Kernels of engine_ops.cuh.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/engine_ops.cuh"

namespace sq::cuda::ops {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

__global__ void embed_k(const int32_t* ids, const float* table, float* x, int d) {
  const int64_t t = blockIdx.x;
  const float* e = table + static_cast<int64_t>(ids[t]) * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) x[t * d + j] = e[j];
}

// One block per row; the sum of squares is a block reduction (fp32, no FMA), then
// y = w · (x · inv) as HF's LlamaRMSNorm.
template <typename Out>
__global__ void rms_norm_k(const float* x, const float* w, float eps, int d, Out* out) {
  __shared__ float red[kThreads / 32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += kThreads) ss = __fadd_rn(ss, __fmul_rn(xr[j], xr[j]));
#pragma unroll
  for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = ss;
  __syncthreads();
  float tot = 0.0f;
  for (int i = 0; i < kThreads / 32; ++i) tot += red[i];
  const float inv = 1.0f / sqrtf(__fdiv_rn(tot, static_cast<float>(d)) + eps);
  for (int j = threadIdx.x; j < d; j += kThreads) {
    const float y = __fmul_rn(w[j], __fmul_rn(xr[j], inv));
    if constexpr (sizeof(Out) == 2) {
      out[row * d + j] = __float2bfloat16_rn(y);
    } else {
      out[row * d + j] = y;
    }
  }
}

// grid (m, heads), block head_dim/2: position pos0 + t, pair (i, i + half).
__global__ void rope_k(float* x, int heads, int hd, int pos0, const float* inv_freq) {
  const int t = blockIdx.x, h = blockIdx.y, i = threadIdx.x, half = hd / 2;
  if (i >= half) return;
  const float f = __fmul_rn(static_cast<float>(pos0 + t), inv_freq[i]);
  const float c = cosf(f), s = sinf(f);
  float* v = x + (static_cast<int64_t>(t) * heads + h) * hd;
  const float a = v[i], b = v[i + half];
  v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

// One block per (query row t, head h); its kAttnWarps warps split the keys 0 .. pos0+t in groups
// of kKeysPerStep (independent loads in flight: one warp walking the keys one by one was
// latency-bound in decode), each keeping a running max, sum and weighted V (online softmax); the
// warps' states are merged through shared memory. Lanes hold head_dim/32 (rounded up) elements.
constexpr int kMaxPerLane = 8;  // head_dim ≤ 256
constexpr int kAttnWarps = 8, kKeysPerStep = 8;
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_k(const float* q, const float* kc, const float* vc, float* out, int pos0, int heads,
                int kv_heads, int hd, float scale) {
  __shared__ float sm_mx[kAttnWarps], sm_sum[kAttnWarps];
  __shared__ float sm_acc[kAttnWarps][kMaxPerLane * 32];
  const int t = blockIdx.x / heads, h = blockIdx.x % heads, kvh = h / (heads / kv_heads);
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
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
  const int n_keys = pos0 + t + 1;
  for (int j0 = w * kKeysPerStep; j0 < n_keys; j0 += kAttnWarps * kKeysPerStep) {
    float sc[kKeysPerStep];
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const int j = min(j0 + u, n_keys - 1);
      const float* kr = kc + j * kv_stride + kvh * hd;
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) s += qv[i] * kr[d];
      }
      sc[u] = s;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], off);
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const int j = j0 + u;
      if (j >= n_keys) break;
      const float s = sc[u] * scale;
      const float mx_new = fmaxf(mx, s);
      const float corr = expf(mx - mx_new), p = expf(s - mx_new);
      sum = sum * corr + p;
      const float* vr = vc + j * kv_stride + kvh * hd;
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) acc[i] = acc[i] * corr + p * vr[d];
      }
      mx = mx_new;
    }
  }
  if (lane == 0) {
    sm_mx[w] = mx;
    sm_sum[w] = sum;
  }
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) sm_acc[w][lane + 32 * i] = acc[i];
  __syncthreads();
  if (w != 0) return;
  float gmx = -INFINITY;
  for (int k = 0; k < kAttnWarps; ++k) gmx = fmaxf(gmx, sm_mx[k]);
  float total = 0.0f, f[kAttnWarps];
  for (int k = 0; k < kAttnWarps; ++k) {
    f[k] = sm_sum[k] > 0.0f ? expf(sm_mx[k] - gmx) : 0.0f;  // warps without keys contribute 0
    total += sm_sum[k] * f[k];
  }
  const float inv = 1.0f / total;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d >= hd) continue;
    float o = 0.0f;
    for (int k = 0; k < kAttnWarps; ++k) o += sm_acc[k][d] * f[k];
    out[t * q_stride + h * hd + d] = o * inv;
  }
}

// Prefill: one block of kPfRows warps serves kPfRows consecutive query rows of one head; key and
// value tiles of kPfKeys rows are staged in shared memory once for all of them (the per-row
// kernel above re-read K and V from L2 for every query row). Each warp then walks the tile from
// shared memory with the same online softmax. head_dim ≤ kPfMaxDim.
constexpr int kPfRows = 16, kPfKeys = 32, kPfMaxDim = 128;
__global__ void __launch_bounds__(kPfRows * 32)
    attention_prefill_k(const float* q, const float* kc, const float* vc, float* out, int m,
                        int pos0, int heads, int kv_heads, int hd, float scale) {
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

__global__ void silu_mul_k(const float* g, const float* u, float* of, __nv_bfloat16* ob,
                           int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gv = g[i];
    const float y = __fmul_rn(__fdiv_rn(gv, 1.0f + expf(-gv)), u[i]);
    if (of) of[i] = y;
    if (ob) ob[i] = __float2bfloat16_rn(y);
  }
}

__global__ void add_k(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void add_bias_k(float* y, const float* b, int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % n];
}

__global__ void to_bf16_k(const float* x, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

__device__ uint32_t hash(uint64_t i, uint32_t seed) {
  uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32);
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return h;
}

template <typename T>
__global__ void fill_k(T* p, int64_t n, float amp, float offset, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(hash(i, seed) % 20001u) / 10000.0f - 1.0f;
    if constexpr (sizeof(T) == 1) {
      p[i] = static_cast<int8_t>(static_cast<int>(hash(i, seed) % 255u) - 127);
    } else if constexpr (sizeof(T) == 2) {
      p[i] = __float2bfloat16_rn(offset + amp * u);
    } else {
      p[i] = offset + amp * u;
    }
  }
}

}  // namespace

void embed(const int32_t* ids, const float* table, float* x, int64_t m, int64_t d, cudaStream_t s) {
  embed_k<<<static_cast<unsigned>(m), kThreads, 0, s>>>(ids, table, x, static_cast<int>(d));
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_bf16(const float* x, const float* w, float eps, int64_t m, int64_t d,
                   __nv_bfloat16* out, cudaStream_t s) {
  rms_norm_k<__nv_bfloat16>
      <<<static_cast<unsigned>(m), kThreads, 0, s>>>(x, w, eps, static_cast<int>(d), out);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_f32(const float* x, const float* w, float eps, int64_t m, int64_t d, float* out,
                  cudaStream_t s) {
  rms_norm_k<float>
      <<<static_cast<unsigned>(m), kThreads, 0, s>>>(x, w, eps, static_cast<int>(d), out);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rope(float* x, int64_t m, int64_t heads, int64_t head_dim, int64_t pos0, const float* inv_freq,
          cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(heads));
  rope_k<<<grid, static_cast<unsigned>(std::max<int64_t>(32, head_dim / 2)), 0, s>>>(
      x, static_cast<int>(heads), static_cast<int>(head_dim), static_cast<int>(pos0), inv_freq);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
               cudaStream_t s) {
  if (m >= 8 && head_dim <= kPfMaxDim) {
    const dim3 grid(static_cast<unsigned>((m + kPfRows - 1) / kPfRows),
                    static_cast<unsigned>(heads));
    attention_prefill_k<<<grid, kPfRows * 32, 0, s>>>(
        q, k_cache, v_cache, out, static_cast<int>(m), static_cast<int>(pos0),
        static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<int>(head_dim), scale);
    SQ_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const unsigned blocks = static_cast<unsigned>(m * heads);
  attention_k<<<blocks, kAttnWarps * 32, 0, s>>>(
      q, k_cache, v_cache, out, static_cast<int>(pos0), static_cast<int>(heads),
      static_cast<int>(kv_heads), static_cast<int>(head_dim), scale);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void silu_mul(const float* gate, const float* up, float* out_f32, __nv_bfloat16* out_bf16,
              int64_t n, cudaStream_t s) {
  silu_mul_k<<<blocks_for(n), kThreads, 0, s>>>(gate, up, out_f32, out_bf16, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void add(float* x, const float* y, int64_t n, cudaStream_t s) {
  add_k<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t s) {
  add_bias_k<<<blocks_for(m * n), kThreads, 0, s>>>(y, bias, m * n, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t s) {
  to_bf16_k<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void fill_random(__nv_bfloat16* p, int64_t n, float amp, uint32_t seed, cudaStream_t s) {
  fill_k<<<blocks_for(n), kThreads, 0, s>>>(p, n, amp, 0.0f, seed);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void fill_random(float* p, int64_t n, float amp, float offset, uint32_t seed, cudaStream_t s) {
  fill_k<<<blocks_for(n), kThreads, 0, s>>>(p, n, amp, offset, seed);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void fill_random(int8_t* p, int64_t n, uint32_t seed, cudaStream_t s) {
  fill_k<<<blocks_for(n), kThreads, 0, s>>>(p, n, 0.0f, 0.0f, seed);
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sq::cuda::ops
