// The fused GPU RMSNorm + per-token quantization against the CPU's (ops::rms_norm_q8), with
// outlier channels in the input: scales within fp32 rounding, int8 values off by at most one
// where a reduction-order ulp crosses a rounding boundary, and rarely. Skips without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sq
