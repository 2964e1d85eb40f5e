// The fused GPU RMSNorm + per-token quantization against the CPU's (ops::rms_norm_q8), with
// outlier channels in the input: scales within fp32 rounding, int8 values off by at most one
// where a reduction-order ulp crosses a rounding boundary, and rarely. Skips without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda/device_query.h"
#include "backend/cuda/norm_quant_cuda.h"
#include "ops/ops.h"

namespace sq {
namespace {

template <typename T>
T* upload(const std::vector<T>& v) {
  T* p = nullptr;
  SQ_CUDA_CHECK(cudaMalloc(&p, v.size() * sizeof(T)));
  SQ_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

TEST(CudaNormQuant, MatchesTheCpuFusedNormWithinRounding) {
  if (cuda::query_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const int64_t d : {1, 100, 2048, 8192}) {
    // 33 rows take the 1024-thread kernel (decode sizes), 100 the 256-thread one (prefill).
    for (const auto& [bf16, m] : {std::pair{false, int64_t{33}},
                                  {true, int64_t{33}},
                                  {false, int64_t{100}},
                                  {true, int64_t{100}}}) {
      std::vector<float> x(m * d), w(d);
      std::vector<uint16_t> xb(m * d);
      for (auto& v : w) v = 0.5f + std::fabs(nd(rng));
      if (d > 4) w[d / 3] = 60.0f;  // an outlier channel, as SmoothQuant sees them
      for (size_t i = 0; i < x.size(); ++i) {
        xb[i] = __bfloat16_as_ushort(__float2bfloat16_rn(nd(rng)));
        x[i] = bf16 ? __bfloat162float(__ushort_as_bfloat16(xb[i])) : nd(rng);
      }
      std::vector<float> y_cpu(m * d), s_cpu(m);
      std::vector<int8_t> q_cpu(m * d);
      ops::rms_norm_q8(x.data(), w.data(), 1e-6f, y_cpu.data(), q_cpu.data(), s_cpu.data(), m, d);

      float *dx = upload(x), *dw = upload(w), *ds = nullptr;
      uint16_t* dxb = upload(xb);
      int8_t* dq = nullptr;
      SQ_CUDA_CHECK(cudaMalloc(&dq, m * d));
      SQ_CUDA_CHECK(cudaMalloc(&ds, m * sizeof(float)));
      if (bf16) {
        cuda::rms_norm_quant_s8(dxb, dw, 1e-6f, m, d, dq, ds, nullptr);
      } else {
        cuda::rms_norm_quant_s8(dx, dw, 1e-6f, m, d, dq, ds, nullptr);
      }
      std::vector<int8_t> q(m * d);
      std::vector<float> s(m);
      SQ_CUDA_CHECK(cudaMemcpy(q.data(), dq, q.size(), cudaMemcpyDeviceToHost));
      SQ_CUDA_CHECK(cudaMemcpy(s.data(), ds, s.size() * sizeof(float), cudaMemcpyDeviceToHost));
      cudaFree(dx), cudaFree(dw), cudaFree(ds), cudaFree(dxb), cudaFree(dq);
      int64_t off_by_one = 0;
      for (int64_t i = 0; i < m; ++i) {
        // The CPU sums d squares sequentially in fp32: its relative error bound is about d·2⁻²⁴,
        // which the scale inherits (halved by the square root); the GPU's tree sum is tighter.
        const float tol = static_cast<float>(d + 8) * 6e-8f * s_cpu[i];
        ASSERT_NEAR(s[i], s_cpu[i], tol) << "d=" << d << " row " << i;
        for (int64_t j = 0; j < d; ++j) {
          const int diff = std::abs(int(q[i * d + j]) - int(q_cpu[i * d + j]));
          ASSERT_LE(diff, 1) << "d=" << d << " at " << i << "," << j;
          off_by_one += diff;
        }
      }
      EXPECT_LE(off_by_one, std::max<int64_t>(2, m * d / 1000)) << "d=" << d << " bf16=" << bf16;
    }
  }
}

// SiLU(gate) · up quantized per token: decode-sized calls (a CTA cluster per row on Hopper) give
// the same bits as the rows of a prefill-sized call (one block per row), and both are within
// one step of a CPU reference (expf may differ by an ulp between the two libraries).
TEST(CudaNormQuant, SiluMulQuantSameBitsForAnyRowCount) {
  if (cuda::query_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (const int64_t ffn : {1, 100, 11008, 40000}) {
    const int64_t m_all = 70;
    std::vector<float> gu(static_cast<size_t>(m_all * 2 * ffn));
    for (auto& v : gu) v = nd(rng);
    gu[static_cast<size_t>(ffn / 2)] = 40.0f;  // an outlier gate in row 0
    float* dgu = upload(gu);
    auto run = [&](int64_t m, std::vector<int8_t>& q, std::vector<float>& s) {
      int8_t* dq = nullptr;
      float* ds = nullptr;
      SQ_CUDA_CHECK(cudaMalloc(&dq, m * ffn));
      SQ_CUDA_CHECK(cudaMalloc(&ds, m * sizeof(float)));
      cuda::silu_mul_quant_s8(dgu, m, ffn, dq, ds, nullptr);
      q.resize(m * ffn), s.resize(m);
      SQ_CUDA_CHECK(cudaMemcpy(q.data(), dq, q.size(), cudaMemcpyDeviceToHost));
      SQ_CUDA_CHECK(cudaMemcpy(s.data(), ds, m * sizeof(float), cudaMemcpyDeviceToHost));
      cudaFree(dq), cudaFree(ds);
    };
    std::vector<int8_t> q_all, q_few;
    std::vector<float> s_all, s_few;
    run(m_all, q_all, s_all);
    for (const int64_t m : {1, 3, 5}) {
      run(m, q_few, s_few);
      for (int64_t i = 0; i < m; ++i) ASSERT_EQ(s_few[i], s_all[i]) << "ffn " << ffn << " m " << m;
      for (int64_t j = 0; j < m * ffn; ++j)
        ASSERT_EQ(q_few[j], q_all[j]) << "ffn " << ffn << " m " << m << " at " << j;
    }
    cudaFree(dgu);
    for (int64_t i = 0; i < m_all; ++i) {
      std::vector<float> y(static_cast<size_t>(ffn));
      float amax = 0.0f;
      for (int64_t j = 0; j < ffn; ++j) {
        const float g = gu[i * 2 * ffn + j], u = gu[i * 2 * ffn + ffn + j];
        y[j] = g / (1.0f + std::exp(-g)) * u;
        amax = std::max(amax, std::fabs(y[j]));
      }
      const float scale = std::max(amax, 1e-5f) / 127.0f;
      ASSERT_NEAR(s_all[i], scale, 4e-7f * scale) << "ffn " << ffn << " row " << i;
      for (int64_t j = 0; j < ffn; ++j) {
        const float want = std::clamp(std::rint(y[j] / scale), -127.0f, 127.0f);
        ASSERT_LE(std::fabs(q_all[i * ffn + j] - want), 1.0f) << "ffn " << ffn << " at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace sq
