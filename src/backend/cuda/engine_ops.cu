// Kernels of engine_ops.cuh (attention lives in attention.cu). The per-layer ones are launched
// with programmatic dependent launch (pdl.cuh) and wait for their predecessor before touching
// memory: only the launch latency overlaps the previous kernel's tail.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/kernel_launch.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/quant_math.cuh"

namespace sq::cuda::ops {
namespace {

constexpr int kThreads = 256;

// Null counts as aligned: the vector paths skip null outputs and inputs.

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

// pos_table (learned positions, nullable): row *pos + t + offset is added, as the CPU engine does.
__global__ void embed_k(const int32_t* ids, const float* table, const float* pos_table,
                        const int* pos, int offset, float* x, int d) {
  const int64_t t = blockIdx.x;
  const float* e = table + static_cast<int64_t>(ids[t]) * d;
  if (pos_table) {
    const float* p = pos_table + static_cast<int64_t>(*pos + t + offset) * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) x[t * d + j] = __fadd_rn(e[j], p[j]);
  } else {
    for (int j = threadIdx.x; j < d; j += blockDim.x) x[t * d + j] = e[j];
  }
}

// One block per row; the sum of squares is a block reduction (fp32, no FMA), then
// y = w · (x · inv) as HF's LlamaRMSNorm. With `res`, the residual add x += res comes first (and
// is written back): the add that closes one sub-block and the norm that opens the next share a
// pass over the row. (Its summation order is left as is: 16-byte loads with four elements per
// thread moved `evaluate`'s SmoothQuant-O3 row on TinyStories from +0.018% to +0.107% of the CPU
// perplexity on the H200 — per-tensor static scales amplify fp32 order — past the 0.1% bound.)
template <typename Out, int Threads>
__global__ void __launch_bounds__(Threads)
    rms_norm_k(float* x, const float* res, const float* w, float eps, int d, Out* out) {
  pdl_trigger();
  pdl_wait();
  __shared__ float red[Threads / 32];
  const int64_t row = blockIdx.x;
  float* xr = x + row * d;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += Threads) {
    float v = xr[j];
    if (res) xr[j] = v = __fadd_rn(v, res[row * d + j]);
    ss = __fadd_rn(ss, __fmul_rn(v, v));
  }
  const float tot = block_sum<Threads>(ss, red);
  const float inv = 1.0f / sqrtf(__fdiv_rn(tot, static_cast<float>(d)) + eps);
  for (int j = threadIdx.x; j < d; j += Threads) {
    const float y = __fmul_rn(w[j], __fmul_rn(xr[j], inv));
    if constexpr (sizeof(Out) == 2) {
      out[row * d + j] = __float2bfloat16_rn(y);
    } else {
      out[row * d + j] = y;
    }
  }
}

// LayerNorm (OPT) as the CPU computes it: mean, then the mean of squared deviations (two passes,
// fp32), y = (x − mean) · inv · w + b with no FMA; the sums are block reductions. With `res`, the
// residual add x += res comes first and is written back, as in rms_norm_k.
template <typename Out, int Threads>
__global__ void __launch_bounds__(Threads)
    layer_norm_k(float* x, const float* res, const float* w, const float* b, float eps, int d,
                 Out* out) {
  pdl_trigger();
  pdl_wait();
  __shared__ float red[Threads / 32];
  const int64_t row = blockIdx.x;
  float* xr = x + row * d;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < d; j += Threads) {
    float v = xr[j];
    if (res) xr[j] = v = __fadd_rn(v, res[row * d + j]);
    sum = __fadd_rn(sum, v);
  }
  const float mean = __fdiv_rn(block_sum<Threads>(sum, red), static_cast<float>(d));
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += Threads) {
    const float c = __fsub_rn(xr[j], mean);
    ss = __fadd_rn(ss, __fmul_rn(c, c));
  }
  const float var = __fdiv_rn(block_sum<Threads>(ss, red), static_cast<float>(d));
  const float inv = 1.0f / sqrtf(__fadd_rn(var, eps));
  for (int j = threadIdx.x; j < d; j += Threads) {
    const float y =
        __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(xr[j], mean), inv), w[j]), b ? b[j] : 0.0f);
    if constexpr (sizeof(Out) == 2) {
      out[row * d + j] = __float2bfloat16_rn(y);
    } else {
      out[row * d + j] = y;
    }
  }
}

__global__ void relu_k(const float* x, float* of, __nv_bfloat16* ob, int64_t n) {
  pdl_trigger();
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float y = x[i] < 0.0f ? 0.0f : x[i];  // std::max(x, 0.0f) as the CPU: NaN stays NaN
    if (of) of[i] = y;
    if (ob) ob[i] = __float2bfloat16_rn(y);
  }
}

// cos and sin of an fp32 angle rounded from double precision: correctly rounded in practice, as
// the CPU engine's std::cos/std::sin(float) (glibc) are, where CUDA's cosf/sinf may be an ulp off.
// An ulp in a rotated key can flip a rounding of a quantized activation downstream.
__device__ __forceinline__ void rope_cos_sin(float angle, float& c, float& s) {
  double sd, cd;
  sincos(static_cast<double>(angle), &sd, &cd);
  c = static_cast<float>(cd);
  s = static_cast<float>(sd);
}

// The fused q|k|v output row t → q (rotated) into q_out, k (rotated) and v into the layer's cache
// at position *pos + t. Position p rotates pair (i, i + half) by p · inv_freq[i] (HF rotate_half).
// grid (m, head groups), block kRopeThreads: a block computes the row's cos/sin once (double
// precision, see rope_cos_sin) and applies them to `per_block` consecutive heads of the row —
// query heads first, then key heads, each also copying its value head. One block per (token,
// head) had recomputed the same sincos for every head and ran 64-thread blocks: ~160 µs per
// 2048-token Llama-2-7B layer (ncu, running clock), ~1.3 TB/s; now 64 µs at ncu's locked clock.
constexpr int kRopeThreads = 256, kRopeMaxHalf = 256;

__global__ void __launch_bounds__(kRopeThreads)
    rope_qkv_k(const float* qkv, float* q_out, float* kc, float* vc, const int* pos, int heads,
               int kv_heads, int hd, const float* inv_freq, int per_block) {
  pdl_trigger();
  pdl_wait();
  __shared__ float cos_s[kRopeMaxHalf], sin_s[kRopeMaxHalf];
  const int t = blockIdx.x, half = hd / 2;
  const int qd = heads * hd, kvd = kv_heads * hd;
  const int p = *pos + t;
  for (int i = threadIdx.x; i < half; i += blockDim.x)
    rope_cos_sin(__fmul_rn(static_cast<float>(p), inv_freq[i]), cos_s[i], sin_s[i]);
  __syncthreads();
  const int total = kc ? heads + kv_heads : heads;  // no kc: queries only (int8 KV cache path)
  const int h0 = blockIdx.y * per_block, h1 = min(h0 + per_block, total);
  const float* row = qkv + static_cast<int64_t>(t) * (qd + 2 * kvd);
  for (int e = threadIdx.x; e < (h1 - h0) * half; e += blockDim.x) {
    const int h = h0 + e / half, i = e % half;
    const float* src;
    float* dst;
    if (h < heads) {
      src = row + h * hd;
      dst = q_out + static_cast<int64_t>(t) * qd + h * hd;
    } else {
      const int kh = h - heads;
      src = row + qd + kh * hd;
      dst = kc + static_cast<int64_t>(p) * kvd + kh * hd;
      if (vc) {  // null: the GEMM wrote v into the cache itself
        const float* vs = row + qd + kvd + kh * hd;
        float* vd = vc + static_cast<int64_t>(p) * kvd + kh * hd;
        vd[i] = vs[i];
        vd[i + half] = vs[i + half];
      }
    }
    const float c = cos_s[i], sn = sin_s[i];
    const float a = src[i], b = src[i + half];
    dst[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn));
    dst[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, sn));
  }
}

// int8 KV cache → fp32 keys (rotated at their positions) and values for positions [0, *pos + m),
// as the CPU's int8 path: x = q · scale, then RoPE. Block (position stride, kv head), head_dim/2
// threads, each a rotation pair.
__global__ void dequant_rope_kv_k(const int8_t* k8, const float* ks, const int8_t* v8,
                                  const float* vs, const int* pos, int m, int kv_heads, int hd,
                                  const float* inv_freq, float* kf, float* vf) {
  const int n = *pos + m, kh = blockIdx.y, i = threadIdx.x, half = hd / 2;
  if (i >= half) return;
  const int64_t kvd = static_cast<int64_t>(kv_heads) * hd;
  for (int p = blockIdx.x; p < n; p += gridDim.x) {
    const int64_t o = p * kvd + kh * hd;
    const float sk = ks[p], sv = vs[p];
    const float a = static_cast<float>(k8[o + i]) * sk,
                b = static_cast<float>(k8[o + i + half]) * sk;
    const float f = __fmul_rn(static_cast<float>(p), inv_freq[i]);
    float c, sn;
    rope_cos_sin(f, c, sn);
    kf[o + i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn));
    kf[o + i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, sn));
    vf[o + i] = static_cast<float>(v8[o + i]) * sv;
    vf[o + i + half] = static_cast<float>(v8[o + i + half]) * sv;
  }
}

// gu rows are [gate (ffn) | up (ffn)], the fused gate/up GEMM's output. grid (column blocks,
// rows): no 64-bit division per element (which, with scalar loads and stores, held the 2048-row
// call to ~1.7 TB/s); kVec4 (ffn % 4 == 0) moves four columns per thread.
template <bool kVec4>
__device__ __forceinline__ void silu_mul_row(const float* gu, int64_t t, int ffn, float* of,
                                             __nv_bfloat16* ob) {
  const float* g = gu + t * 2 * ffn;
  const float* u = g + ffn;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if constexpr (kVec4) {
    if (j >= ffn / 4) return;
    const float4 gv = reinterpret_cast<const float4*>(g)[j];
    const float4 uv = reinterpret_cast<const float4*>(u)[j];
    const float4 y = make_float4(sq::cuda::silu_mul(gv.x, uv.x), sq::cuda::silu_mul(gv.y, uv.y),
                                 sq::cuda::silu_mul(gv.z, uv.z), sq::cuda::silu_mul(gv.w, uv.w));
    if (of) reinterpret_cast<float4*>(of + t * ffn)[j] = y;
    if (ob) {
      const __nv_bfloat162 lo = __floats2bfloat162_rn(y.x, y.y);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(y.z, y.w);
      uint2 pk;
      pk.x = *reinterpret_cast<const uint32_t*>(&lo);
      pk.y = *reinterpret_cast<const uint32_t*>(&hi);
      reinterpret_cast<uint2*>(ob + t * ffn)[j] = pk;
    }
  } else {
    if (j >= ffn) return;
    const float y = sq::cuda::silu_mul(g[j], u[j]);  // not ops::silu_mul
    if (of) of[t * ffn + j] = y;
    if (ob) ob[t * ffn + j] = __float2bfloat16_rn(y);
  }
}

template <bool kVec4>
__global__ void silu_mul_k(const float* gu, int64_t m, int ffn, float* of, __nv_bfloat16* ob) {
  pdl_trigger();
  pdl_wait();
  for (int64_t t = blockIdx.y; t < m; t += gridDim.y) silu_mul_row<kVec4>(gu, t, ffn, of, ob);
}

__global__ void add_bias_k(float* y, const float* b, int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % n];
}

// n4 = n / 4 groups of four (16-byte loads, 8-byte stores), then the n % 4 tail.
__global__ void to_bf16_k(const float* x, __nv_bfloat16* y, int64_t n) {
  pdl_trigger();
  pdl_wait();
  const int64_t n4 = n / 4, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    const float4 v = reinterpret_cast<const float4*>(x)[i];
    const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
    const __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 pk;
    pk.x = *reinterpret_cast<const uint32_t*>(&lo);
    pk.y = *reinterpret_cast<const uint32_t*>(&hi);
    reinterpret_cast<uint2*>(y)[i] = pk;
  }
  for (int64_t i = 4 * n4 + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
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

void embed(const int32_t* ids, const float* table, float* x, int64_t m, int64_t d, cudaStream_t s,
           const float* pos_table, const int* pos, int64_t offset) {
  embed_k<<<static_cast<unsigned>(m), kThreads, 0, s>>>(
      ids, table, pos_table, pos, static_cast<int>(offset), x, static_cast<int>(d));
  SQ_CUDA_CHECK(cudaGetLastError());
}

// Few rows (decode) get 1024-thread blocks: one 256-thread block per 4096-wide row was
// latency-bound (14 µs on the H200).
template <typename Out>
void launch_rms_norm(float* x, const float* res, const float* w, float eps, int64_t m, int64_t d,
                     Out* out, cudaStream_t s) {
  if (m <= 64) {
    launch_pdl(rms_norm_k<Out, 1024>, dim3(static_cast<unsigned>(m)), dim3(1024), s, x, res, w, eps,
               static_cast<int>(d), out);
  } else {
    launch_pdl(rms_norm_k<Out, kThreads>, dim3(static_cast<unsigned>(m)), dim3(kThreads), s, x, res,
               w, eps, static_cast<int>(d), out);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

template <typename Out>
void launch_layer_norm(float* x, const float* res, const float* w, const float* b, float eps,
                       int64_t m, int64_t d, Out* out, cudaStream_t s) {
  if (m <= 64) {
    launch_pdl(layer_norm_k<Out, 1024>, dim3(static_cast<unsigned>(m)), dim3(1024), s, x, res, w, b,
               eps, static_cast<int>(d), out);
  } else {
    launch_pdl(layer_norm_k<Out, kThreads>, dim3(static_cast<unsigned>(m)), dim3(kThreads), s, x,
               res, w, b, eps, static_cast<int>(d), out);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

void layer_norm_bf16(float* x, const float* res, const float* w, const float* b, float eps,
                     int64_t m, int64_t d, __nv_bfloat16* out, cudaStream_t s) {
  launch_layer_norm(x, res, w, b, eps, m, d, out, s);
}

void layer_norm_f32(float* x, const float* res, const float* w, const float* b, float eps,
                    int64_t m, int64_t d, float* out, cudaStream_t s) {
  launch_layer_norm(x, res, w, b, eps, m, d, out, s);
}

void relu(const float* x, int64_t n, float* out_f32, __nv_bfloat16* out_bf16, cudaStream_t s) {
  launch_pdl(relu_k, dim3(blocks_for(n)), dim3(kThreads), s, x, out_f32, out_bf16, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_bf16(float* x, const float* res, const float* w, float eps, int64_t m, int64_t d,
                   __nv_bfloat16* out, cudaStream_t s) {
  launch_rms_norm(x, res, w, eps, m, d, out, s);
}

void rms_norm_f32(float* x, const float* res, const float* w, float eps, int64_t m, int64_t d,
                  float* out, cudaStream_t s) {
  launch_rms_norm(x, res, w, eps, m, d, out, s);
}

void rope_qkv_to_cache(const float* qkv, float* q_out, float* k_cache, float* v_cache,
                       const int* pos, int64_t m, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       const float* inv_freq, cudaStream_t s) {
  if (head_dim / 2 > kRopeMaxHalf)
    throw std::runtime_error("RoPE on the GPU: head_dim " + std::to_string(head_dim) +
                             " is beyond " + std::to_string(2 * kRopeMaxHalf));
  // Enough blocks to cover the SMs twice at decode (m = 1: a head per block, as many blocks as
  // heads); whole rows per block once there are that many tokens.
  const int64_t total = k_cache ? heads + kv_heads : heads;
  const int64_t groups = std::clamp<int64_t>((264 + m - 1) / m, 1, total);
  const int64_t per_block = (total + groups - 1) / groups;
  const dim3 grid(static_cast<unsigned>(m),
                  static_cast<unsigned>((total + per_block - 1) / per_block));
  launch_pdl(rope_qkv_k, grid, dim3(kRopeThreads), s, qkv, q_out, k_cache, v_cache, pos,
             static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<int>(head_dim),
             inv_freq, static_cast<int>(per_block));
  SQ_CUDA_CHECK(cudaGetLastError());
}

void silu_mul(const float* gu, int64_t m, int64_t ffn, float* out_f32, __nv_bfloat16* out_bf16,
              cudaStream_t s) {
  if (m <= 0 || ffn <= 0) return;
  const bool vec4 = ffn % 4 == 0 && aligned(gu, 16) && aligned(out_f32, 16) && aligned(out_bf16, 8);
  const int64_t cols = vec4 ? ffn / 4 : ffn;
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  if (vec4) {
    launch_pdl(silu_mul_k<true>, grid, dim3(kThreads), s, gu, m, static_cast<int>(ffn), out_f32,
               out_bf16);
  } else {
    launch_pdl(silu_mul_k<false>, grid, dim3(kThreads), s, gu, m, static_cast<int>(ffn), out_f32,
               out_bf16);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
}

void add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t s) {
  add_bias_k<<<blocks_for(m * n), kThreads, 0, s>>>(y, bias, m * n, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t s) {
  if (!aligned(x, 16) || !aligned(y, 8))
    throw std::runtime_error("internal error: to_bf16 needs 16-byte aligned buffers");
  launch_pdl(to_bf16_k, dim3(blocks_for(n)), dim3(kThreads), s, x, y, n);
  SQ_CUDA_CHECK(cudaGetLastError());
}

void dequant_rope_kv(const int8_t* k8, const float* k_scales, const int8_t* v8,
                     const float* v_scales, const int* pos, int64_t m, int64_t capacity,
                     int64_t kv_heads, int64_t head_dim, const float* inv_freq, float* k_out,
                     float* v_out, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(capacity, 512)),
                  static_cast<unsigned>(kv_heads));
  dequant_rope_kv_k<<<grid, static_cast<unsigned>(std::max<int64_t>(32, head_dim / 2)), 0, s>>>(
      k8, k_scales, v8, v_scales, pos, static_cast<int>(m), static_cast<int>(kv_heads),
      static_cast<int>(head_dim), inv_freq, k_out, v_out);
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
