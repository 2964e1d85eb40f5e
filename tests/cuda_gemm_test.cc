// The CUDA INT8 GEMM against the CPU scalar reference: int32 results bit-exact, the bf16 epilogue
// equal to the reference epilogue (fp32, and rounded to bf16), over awkward shapes (M = 1, tails in
// every dimension, several persistent waves, exactly one full wave). Skips without a Hopper GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/gemm_s8.h"
#include "backend/cuda/engine_ops.cuh"
#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/norm_quant_cuda.h"

namespace sq {
namespace {

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  explicit DeviceBuffer(size_t count) {
    SQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  }
  DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) {
    SQ_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> get(size_t count) const {
    std::vector<T> v(count);
    SQ_CUDA_CHECK(cudaMemcpy(v.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
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
                                  {1000, 3000, 4096},
                                  {1408, 3072, 256}}) {
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

// SiLU(gate) · up in the GEMM epilogue over the kGluBlock-interleaved weight equals, bit for bit,
// the plain [gate | up] GEMM followed by the SiLU kernel; its per-token quantization equals the
// quantizing SiLU kernel's over both layouts (the decode path reads the interleaved one).
TEST(CudaGemmS8, SiluEpilogueEqualsGemmThenSilu) {
  if (!cuda::gemm_s8_supported()) GTEST_SKIP() << "no Hopper (sm_90) GPU visible";
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> q(-127, 127);
  std::uniform_real_distribution<float> u(1e-4f, 2e-3f), b(-1.0f, 1.0f);
  for (const auto tile : {cuda::GemmTileN::kAuto, cuda::GemmTileN::k128, cuda::GemmTileN::k256})
    for (const auto& [m, ffn, k] :
         {std::tuple{17, 64, 64}, {300, 192, 1040}, {129, 704, 2048}, {1000, 1408, 4096}}) {
      const int64_t n = 2 * ffn;
      std::vector<int8_t> a(size_t(m) * k), w(size_t(n) * k), wi(w.size());
      for (auto& x : a) x = static_cast<int8_t>(q(rng));
      for (auto& x : w) x = static_cast<int8_t>(q(rng));
      std::vector<float> sx(m), sw(n), bias(n), swi(n), biasi(n);
      for (auto& x : sx) x = u(rng);
      for (auto& x : sw) x = u(rng);
      for (auto& x : bias) x = b(rng);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t src = cuda::glu_source_row(r, ffn);
        std::copy_n(w.begin() + src * k, k, wi.begin() + r * k);
        swi[r] = sw[src], biasi[r] = bias[src];
      }
      cuda::set_gemm_tile_override(tile);
      const size_t outs = size_t(m) * ffn;
      DeviceBuffer<int8_t> da(a), dw(w), dwi(wi), dq1(outs), dq2(outs), dq3(outs);
      DeviceBuffer<float> dsx(sx), dsw(sw), db(bias), dswi(swi), dbi(biasi);
      DeviceBuffer<float> dgu(2 * outs), dgui(2 * outs), dh(outs), dref(outs), ds1(m), ds2(m),
          ds3(m), damax(m);
      cuda::gemm_s8_f32(da.p, dw.p, {dsx.p, true, dsw.p, true, db.p}, dgu.p, m, n, k, nullptr);
      cuda::ops::silu_mul(dgu.p, m, ffn, dref.p, nullptr, nullptr);
      cuda::GemmS8Epilogue glu{dsx.p, true, dswi.p, true, dbi.p};
      glu.row_absmax = damax.p;
      cuda::gemm_s8_silu_f32(da.p, dwi.p, glu, dh.p, m, n, k, nullptr);
      cuda::gemm_s8_f32(da.p, dwi.p, {dsx.p, true, dswi.p, true, dbi.p}, dgui.p, m, n, k, nullptr);
      cuda::silu_mul_quant_s8(dgu.p, m, ffn, dq1.p, ds1.p, nullptr);
      cuda::silu_mul_quant_s8(dgui.p, m, ffn, dq2.p, ds2.p, nullptr, /*interleaved=*/true);
      cuda::quantize_rows_s8(dh.p, damax.p, m, ffn, dq3.p, ds3.p, nullptr);
      SQ_CUDA_CHECK(cudaDeviceSynchronize());
      cuda::set_gemm_tile_override(cuda::GemmTileN::kAuto);
      const std::string at = "M=" + std::to_string(m) + " ffn=" + std::to_string(ffn) +
                             " K=" + std::to_string(k) + " tile " +
                             std::to_string(static_cast<int>(tile));
      const auto h = dh.get(outs), ref = dref.get(outs);
      for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(h[i], ref[i]) << at << " at " << i;
      size_t nonzero = 0;
      for (float v : h) nonzero += v != 0.0f;
      ASSERT_GT(nonzero, h.size() / 2) << at;  // the comparison saw real values
      const auto amax = damax.get(m);
      for (int64_t i = 0; i < m; ++i) {
        float want = 0.0f;
        for (int64_t j = 0; j < ffn; ++j) want = std::max(want, std::fabs(h[i * ffn + j]));
        ASSERT_EQ(amax[i], want) << at << " row " << i;
      }
      ASSERT_EQ(dq2.get(outs), dq1.get(outs)) << at << ": interleaved SiLU kernel";
      ASSERT_EQ(dq3.get(outs), dq1.get(outs)) << at << ": epilogue + per-token quantization";
      ASSERT_EQ(ds2.get(m), ds1.get(m)) << at;
      ASSERT_EQ(ds3.get(m), ds1.get(m)) << at;
    }
  // The contract's edges: decode-sized M and widths that do not pair up are refused.
  DeviceBuffer<int8_t> a(32 * 64), w(192 * 64);
  DeviceBuffer<float> s(192), y(32 * 96);
  const cuda::GemmS8Epilogue ep{s.p, true, s.p, true, nullptr};
  EXPECT_THROW(cuda::gemm_s8_silu_f32(a.p, w.p, ep, y.p, 32, 128, 64, nullptr), std::runtime_error)
      << "row_absmax missing";
  cuda::GemmS8Epilogue with_max = ep;
  with_max.row_absmax = s.p;
  EXPECT_THROW(cuda::gemm_s8_silu_f32(a.p, w.p, with_max, y.p, 16, 128, 64, nullptr),
               std::runtime_error);
  EXPECT_THROW(cuda::gemm_s8_silu_f32(a.p, w.p, with_max, y.p, 32, 192, 64, nullptr),
               std::runtime_error);
}

// A second output (y2) takes columns [y2_col, n) with the same values as the one-output call,
// through the TMA-store epilogue (16-byte rows) and the register-store one (odd widths).
TEST(CudaGemmS8, SecondOutputHoldsTheColumnsFromTheSplit) {
  if (!cuda::gemm_s8_supported()) GTEST_SKIP() << "no Hopper (sm_90) GPU visible";
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> q(-127, 127);
  std::uniform_real_distribution<float> u(1e-3f, 1e-1f);
  for (const auto& [m, n, k, split] :
       {std::tuple{300, 1040, 1040, 640}, {77, 1041, 144, 384}, {2048, 3072, 512, 2048}}) {
    std::vector<int8_t> a(size_t(m) * k), w(size_t(n) * k);
    for (auto& x : a) x = static_cast<int8_t>(q(rng));
    for (auto& x : w) x = static_cast<int8_t>(q(rng));
    std::vector<float> sx(m), sw(n);
    for (auto& x : sx) x = u(rng);
    for (auto& x : sw) x = u(rng);
    DeviceBuffer<int8_t> da(a), dw(w);
    DeviceBuffer<float> dsx(sx), dsw(sw), dref(size_t(m) * n), dy(size_t(m) * n),
        dy2(size_t(m) * (n - split));
    SQ_CUDA_CHECK(cudaMemset(dy.p, 0, size_t(m) * n * sizeof(float)));
    cuda::GemmS8Epilogue ep{dsx.p, true, dsw.p, true, nullptr};
    cuda::gemm_s8_f32(da.p, dw.p, ep, dref.p, m, n, k, nullptr);
    ep.y2 = dy2.p, ep.y2_col = split;
    cuda::gemm_s8_f32(da.p, dw.p, ep, dy.p, m, n, k, nullptr);
    SQ_CUDA_CHECK(cudaDeviceSynchronize());
    const auto ref = dref.get(size_t(m) * n), y = dy.get(size_t(m) * n),
               y2 = dy2.get(size_t(m) * (n - split));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const float want = ref[i * n + j];
        if (j < split) {
          ASSERT_EQ(y[i * n + j], want) << "M=" << m << " N=" << n << " at " << i << "," << j;
        } else {
          ASSERT_EQ(y2[i * (n - split) + j - split], want) << "M=" << m << " at " << i << "," << j;
          ASSERT_EQ(y[i * n + j], 0.0f) << "y written past the split at " << i << "," << j;
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
