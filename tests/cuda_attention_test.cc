// The engine's attention kernels (split-key decode with its in-kernel merge and quantization,
// tensor-core prefill (two-part FP16 split), fp32-core prefill for other head dims) against a
// float64 causal GQA reference, on random data with a prefix already in the cache (pos0 > 0) and
// row counts that leave partial tiles. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/norm_quant_cuda.h"
#include "backend/registry.h"

namespace sq {
namespace {

std::vector<int8_t> q8_host(size_t n) { return std::vector<int8_t>(n, 99); }

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  SQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)));
  SQ_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

void check_against_float64(cuda::ops::AttentionPrefill prefill) {
  cuda::ops::set_attention_prefill_override(prefill);
  struct Restore {  // also when an assertion returns early: later tests run the default kernels
    ~Restore() { cuda::ops::set_attention_prefill_override(cuda::ops::AttentionPrefill::kAuto); }
  } restore;
  const int heads = 4, kv_heads = 2;
  // One workspace per head dim, as an engine keeps one (its layout depends on the head dim), so
  // that a case with fewer keys finds a longer case's stale partials there (128: 700 keys, then
  // 1), which the merge must not read.
  std::map<int, float*> workspaces;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // (head_dim, rows, pos0): decode sizes (split keys), tensor-core head dims, fp32-core ones;
  // the last two walk many double-buffered key tiles, with row blocks that skip causal tiles.
  for (const auto& [hd, m, pos0] : {std::tuple{128, 1, 700},
                                    {64, 5, 300},
                                    {128, 1, 0},
                                    {256, 3, 40},
                                    {48, 1, 2000},
                                    {80, 7, 100},
                                    {128, 130, 50},
                                    {80, 70, 0},
                                    {16, 9, 3},
                                    {256, 20, 10},
                                    {32, 40, 20},
                                    {96, 17, 5},
                                    {64, 8, 0},
                                    {48, 33, 7},
                                    {128, 300, 200},
                                    {64, 161, 0}}) {
    SCOPED_TRACE("head_dim " + std::to_string(hd) + " m " + std::to_string(m) + " pos0 " +
                 std::to_string(pos0));
    const int n = pos0 + m, qd = heads * hd, kvd = kv_heads * hd;
    std::vector<float> q(size_t(m) * qd), k(size_t(n) * kvd), v(size_t(n) * kvd);
    for (auto& x : q) x = nd(rng);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    float *dq = to_device(q), *dk = to_device(k), *dv = to_device(v);
    int* dpos = to_device(std::vector<int>{pos0});
    float* dout = to_device(std::vector<float>(q.size(), NAN));
    float*& ws = workspaces[hd];
    if (!ws) ws = to_device(std::vector<float>(cuda::ops::attention_workspace_floats(heads, hd)));
    // Twice on the same workspace: the decode kernel's counters must be left ready for reuse.
    cuda::ops::attention(dq, dk, dv, dout, m, dpos, heads, kv_heads, hd, scale, ws, nullptr);
    std::vector<float> got(q.size()), first(q.size());
    SQ_CUDA_CHECK(cudaMemcpy(first.data(), dout, first.size() * 4, cudaMemcpyDeviceToHost));
    SQ_CUDA_CHECK(cudaMemcpy(dout, std::vector<float>(q.size(), NAN).data(), q.size() * 4,
                             cudaMemcpyHostToDevice));
    cuda::ops::attention(dq, dk, dv, dout, m, dpos, heads, kv_heads, hd, scale, ws, nullptr);
    SQ_CUDA_CHECK(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_TRUE(std::memcmp(&got[i], &first[i], 4) == 0) << "second call differs at " << i;
    // Decode rows can also be quantized per token in the same kernel: bit-equal to the separate
    // kernel run on the output, also on a second call (the per-row counters are reset).
    int8_t *q8 = to_device(std::vector<int8_t>(q.size())), *want8 = to_device(q8_host(q.size()));
    float *s8 = to_device(std::vector<float>(m)), *want_s = to_device(std::vector<float>(m));
    for (int call = 0; call < 2; ++call) {
      SQ_CUDA_CHECK(cudaMemset(q8, 0x55, q.size()));
      const bool fused = cuda::ops::attention(dq, dk, dv, dout, m, dpos, heads, kv_heads, hd, scale,
                                              ws, nullptr, q8, s8);
      EXPECT_EQ(fused, m < 8) << "decode-sized calls quantize, prefill-sized ones do not";
      if (!fused) break;
      cuda::quantize_per_token_s8(dout, m, qd, want8, want_s, nullptr);
      std::vector<int8_t> a(q.size()), b(q.size());
      std::vector<float> sa(m), sb(m);
      SQ_CUDA_CHECK(cudaMemcpy(a.data(), q8, a.size(), cudaMemcpyDeviceToHost));
      SQ_CUDA_CHECK(cudaMemcpy(b.data(), want8, b.size(), cudaMemcpyDeviceToHost));
      SQ_CUDA_CHECK(cudaMemcpy(sa.data(), s8, m * 4, cudaMemcpyDeviceToHost));
      SQ_CUDA_CHECK(cudaMemcpy(sb.data(), want_s, m * 4, cudaMemcpyDeviceToHost));
      EXPECT_EQ(a, b) << "call " << call;
      EXPECT_EQ(std::memcmp(sa.data(), sb.data(), m * 4), 0) << "call " << call;
    }
    for (void* p : {static_cast<void*>(q8), static_cast<void*>(want8), static_cast<void*>(s8),
                    static_cast<void*>(want_s)})
      cudaFree(p);
    for (void* p : {static_cast<void*>(dq), static_cast<void*>(dk), static_cast<void*>(dv),
                    static_cast<void*>(dpos), static_cast<void*>(dout)})
      cudaFree(p);
    double worst = 0;
    for (int t = 0; t < m; ++t) {
      for (int h = 0; h < heads; ++h) {
        const int kh = h / (heads / kv_heads), keys = pos0 + t + 1;
        std::vector<double> s(keys);
        double mx = -INFINITY;
        for (int j = 0; j < keys; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += double(q[size_t(t) * qd + h * hd + e]) * k[size_t(j) * kvd + kh * hd + e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double tot = 0;
        for (double& x : s) tot += x = std::exp(x - mx);
        for (int e = 0; e < hd; ++e) {
          double o = 0;
          for (int j = 0; j < keys; ++j) o += s[j] * v[size_t(j) * kvd + kh * hd + e];
          const double want = o / tot, have = got[size_t(t) * qd + h * hd + e];
          ASSERT_FALSE(std::isnan(have)) << "unwritten output at row " << t << " head " << h;
          worst = std::max(worst, std::fabs(have - want));
        }
      }
    }
    // fp32 accumulation (and 22-bit split products) over up to 700 keys of unit-variance data.
    EXPECT_LT(worst, 2e-5);
  }
  for (auto& [hd, ws] : workspaces) cudaFree(ws);
}

TEST(CudaAttention, MatchesAFloat64Reference) {
  if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
  check_against_float64(cuda::ops::AttentionPrefill::kAuto);
}

// The fp32 CUDA-core prefill kernels (SQ_CUDA_ATTN=fp32; the tensor-core kernel serves their head
// dims otherwise) on the same cases.
TEST(CudaAttention, Fp32CoreKernelsMatchAFloat64Reference) {
  if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
  check_against_float64(cuda::ops::AttentionPrefill::kFp32Cores);
}

}  // namespace
}  // namespace sq
