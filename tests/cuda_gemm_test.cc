// The CUDA INT8 GEMM against the CPU scalar reference: int32 results bit-exact, the bf16 epilogue
// equal to the reference epilogue (fp32, and rounded to bf16), over awkward shapes (M = 1, tails in
// every dimension, several persistent waves). Skips without a Hopper GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backend/cpu/gemm_s8.h"
#include "backend/cuda/gemm_s8_cuda.h"

namespace sq {
namespace {

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  explicit DeviceBuffer(size_t n) {
    SQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  }
  DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) {
    SQ_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> get(size_t n) const {
    std::vector<T> v(n);
    SQ_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

TEST(CudaGemmS8, MatchesTheCpuReferenceBitForBit) {
  if (!cuda::gemm_s8_supported()) GTEST_SKIP() << "no Hopper (sm_90) GPU visible";
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> q(-127, 127);
  std::uniform_real_distribution<float> u(1e-3f, 1e-1f), b(-1.0f, 1.0f);
  // Each shape through the automatic tile choice and through both tile widths forced.
  for (const auto tile : {cuda::GemmTileN::kAuto, cuda::GemmTileN::k128, cuda::GemmTileN::k256})
    for (const auto& [m, n, k] : {std::tuple{1, 4096, 4096},
                                  {5, 2049, 4112},
                                  {16, 11008, 64},
                                  {300, 517, 1040},
                                  {77, 1040, 144},
                                  {1000, 3000, 4096}}) {
      std::vector<int8_t> a(size_t(m) * k), w(size_t(n) * k);
      for (auto& x : a) x = static_cast<int8_t>(q(rng));
      for (auto& x : w) x = static_cast<int8_t>(q(rng));
      std::vector<float> sx(m), sw(n), bias(n);
      for (auto& x : sx) x = u(rng);
      for (auto& x : sw) x = u(rng);
      for (auto& x : bias) x = b(rng);
      std::vector<int32_t> want(size_t(m) * n);
      cpu::ref::gemm_s8s8s32(a.data(), m, k, w.data(), n, want.data());

      cuda::set_gemm_tile_override(tile);
      DeviceBuffer<int8_t> da(a), dw(w);
      DeviceBuffer<float> dsx(sx), dsw(sw), db(bias);
      DeviceBuffer<int32_t> dc(want.size());
      DeviceBuffer<uint16_t> dy(want.size());
      cuda::gemm_s8s8s32(da.p, dw.p, dc.p, m, n, k, nullptr);
      cuda::gemm_s8_bf16(da.p, dw.p, {dsx.p, true, dsw.p, true, db.p}, dy.p, m, n, k, nullptr);
      DeviceBuffer<float> dyf(want.size());  // the engine's fp32 epilogue
      cuda::gemm_s8_f32(da.p, dw.p, {dsx.p, true, dsw.p, true, db.p}, dyf.p, m, n, k, nullptr);
      SQ_CUDA_CHECK(cudaDeviceSynchronize());
      cuda::set_gemm_tile_override(cuda::GemmTileN::kAuto);
      const auto got = dc.get(want.size());
      const auto y = dy.get(want.size());
      const auto yf = dyf.get(want.size());
      ASSERT_EQ(got, want) << "M=" << m << " N=" << n << " K=" << k << " tile "
                           << static_cast<int>(tile);
      const cpu::Epilogue ep{sx.data(), true, sw.data(), true, bias.data()};
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const float f = cpu::ref::dequant(want[i * n + j], ep, i, j);
          ASSERT_EQ(yf[i * n + j], f)
              << "fp32 epilogue, M=" << m << " N=" << n << " at " << i << "," << j;
          ASSERT_EQ(y[i * n + j], __bfloat16_as_ushort(__float2bfloat16_rn(f)))
              << "M=" << m << " N=" << n << " K=" << k << " at " << i << "," << j;
        }
      }
    }
}

TEST(CudaGemmS8, RejectsKNotAMultipleOf16) {
  if (!cuda::gemm_s8_supported()) GTEST_SKIP() << "no Hopper (sm_90) GPU visible";
  DeviceBuffer<int8_t> a(8 * 40), w(8 * 40);
  DeviceBuffer<int32_t> c(64);
  EXPECT_THROW(cuda::gemm_s8s8s32(a.p, w.p, c.p, 8, 8, 40, nullptr), std::runtime_error);
}

}  // namespace
}  // namespace sq
