// INT8 GEMM and quantizers (src/backend/cpu/gemm_s8.h): every SIMD path must be bit-exact with the
// scalar reference — int32 sums, the fp32 epilogue and the quantizers — over awkward shapes,
// extreme values and thread counts. ISAs the CPU lacks are skipped.
#include "backend/cpu/gemm_s8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace sq::cpu {
namespace {

std::vector<int8_t> random_s8(size_t n, uint32_t seed, int lo = -127, int hi = 127) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

std::vector<float> random_f32(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class GemmS8 : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
    set_num_threads(2);
  }
  void TearDown() override { set_num_threads(2); }

  // Checks the int32 result of one shape against the reference.
  void check_s32(const std::vector<int8_t>& a, const std::vector<int8_t>& w, int64_t m, int64_t n,
                 int64_t k) {
    std::vector<int32_t> want(static_cast<size_t>(m * n)), got(want.size(), 12345);
    ref::gemm_s8s8s32(a.data(), m, k, w.data(), n, want.data());
    const PackedS8 p = PackedS8::pack(w.data(), n, k, GetParam());
    ASSERT_EQ(p.n(), n);
    ASSERT_EQ(p.k(), k);
    ASSERT_EQ(p.isa(), GetParam());
    gemm_s8s8s32(a.data(), m, k, p, got.data());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "m=" << m << " n=" << n << " k=" << k << " at row " << i / n
                                 << " col " << i % n;
    }
  }
};

TEST_P(GemmS8, AwkwardShapesMatchReference) {
  uint32_t seed = 1;
  for (int64_t k : {1, 3, 31, 33, 100}) {
    for (int64_t m : {1, 2, 3, 17, 64}) {
      for (int64_t n : {1, 7, 2049}) {
        check_s32(random_s8(m * k, seed), random_s8(n * k, seed + 1), m, n, k);
        seed += 2;
      }
    }
  }
  for (int64_t m : {1, 3, 4, 5, 17, 64}) {
    for (int64_t n : {7, 129})
      check_s32(random_s8(m * 4097, m), random_s8(n * 4097, n), m, n, 4097);
  }
  check_s32(random_s8(5 * 4097, 7), random_s8(2049 * 4097, 8), 5, 2049, 4097);
}

TEST_P(GemmS8, SeveralRowBlocks) {
  // K = 4097 makes the row blocks ~126 rows, so M = 300 spans three blocks and partial tiles.
  check_s32(random_s8(300 * 4097, 11), random_s8(100 * 4097, 12), 300, 100, 4097);
  check_s32(random_s8(1000 * 64, 13), random_s8(3 * 64, 14), 1000, 3, 64);
}

TEST_P(GemmS8, EmptyShapes) {
  check_s32({}, random_s8(7 * 5, 1), 0, 7, 5);
  check_s32(random_s8(3 * 5, 2), {}, 3, 0, 5);
  check_s32({}, {}, 3, 4, 0);  // K = 0: every sum is 0
}

TEST_P(GemmS8, ExtremeValuesAccumulateExactly) {
  // Largest K: |Σ| = 127² · kMaxK is just below 2³¹; VNNI's a + 128 sums wrap and must come back.
  const int64_t k = kMaxK, m = 2, n = 17;
  for (int sa : {127, -127}) {
    for (int sw : {127, -127}) {
      check_s32(std::vector<int8_t>(m * k, static_cast<int8_t>(sa)),
                std::vector<int8_t>(n * k, static_cast<int8_t>(sw)), m, n, k);
    }
  }
  // -128 in A is exact too (header contract), e.g. with the AVX2 sign trick |−128| = 128 as u8.
  check_s32(std::vector<int8_t>(3 * 4099, -128), std::vector<int8_t>(9 * 4099, -127), 3, 9, 4099);
  check_s32(random_s8(9 * 999, 3, -128, 127), random_s8(33 * 999, 4), 9, 33, 999);
}

TEST_P(GemmS8, ThreadCountDoesNotChangeResults) {
  const int64_t m = 37, n = 300, k = 257;
  const auto a = random_s8(m * k, 21), w = random_s8(n * k, 22);
  const auto sx = random_f32(m, 23, 1e-3f, 1e-1f), sw = random_f32(n, 24, 1e-3f, 1e-1f);
  const auto bias = random_f32(n, 25, -1.0f, 1.0f);
  const PackedS8 p = PackedS8::pack(w.data(), n, k, GetParam());
  const Epilogue e{sx.data(), true, sw.data(), true, bias.data()};
  std::vector<float> y1(m * n), y;
  std::vector<int32_t> c1(m * n), c;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t rows : {int64_t{1}, int64_t{3}, m}) {
      y.assign(rows * n, 0.0f);
      c.assign(rows * n, 0);
      gemm_s8_f32(a.data(), rows, k, p, e, y.data());
      gemm_s8s8s32(a.data(), rows, k, p, c.data());
      if (threads == 1 && rows == m) {
        y1 = y;
        c1 = c;
      }
    }
    ASSERT_TRUE(same_bits(y, y1)) << threads << " threads";
    ASSERT_EQ(c, c1) << threads << " threads";
  }
}

TEST_P(GemmS8, EpilogueBitExactForEveryGranularity) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 2049, 100},
                         {3, 77, 33},
                         {17, 130, 4097},
                         {64, 64, 31}}) {
    const auto a = random_s8(m * k, 31), w = random_s8(n * k, 32);
    const auto sx = random_f32(m, 33, 1e-4f, 1.0f), sw = random_f32(n, 34, 1e-4f, 1.0f);
    const auto bias = random_f32(n, 35, -3.0f, 3.0f);
    const PackedS8 p = PackedS8::pack(w.data(), n, k, GetParam());
    for (bool per_token : {false, true}) {
      for (bool per_channel : {false, true}) {
        for (bool with_bias : {false, true}) {
          const Epilogue e{sx.data(), per_token, sw.data(), per_channel,
                           with_bias ? bias.data() : nullptr};
          std::vector<float> want(m * n), got(m * n, -1.0f);
          ref::gemm_s8_f32(a.data(), m, k, w.data(), n, e, want.data());
          gemm_s8_f32(a.data(), m, k, p, e, got.data());
          ASSERT_TRUE(same_bits(got, want))
              << "m=" << m << " n=" << n << " k=" << k << " per_token=" << per_token
              << " per_channel=" << per_channel << " bias=" << with_bias;
        }
      }
    }
  }
}

TEST_P(GemmS8, PackRejectsMinus128) {
  auto w = random_s8(5 * 9, 41);
  w[17] = -128;
  EXPECT_THROW(PackedS8::pack(w.data(), 5, 9, GetParam()), Error);
}

TEST_P(GemmS8, PackRejectsWrongK) {
  const auto w = random_s8(5 * 9, 42), a = random_s8(2 * 8, 43);
  const PackedS8 p = PackedS8::pack(w.data(), 5, 9, GetParam());
  std::vector<int32_t> c(10);
  EXPECT_THROW(gemm_s8s8s32(a.data(), 2, 8, p, c.data()), Error);
  EXPECT_GE(p.bytes(), size_t{5 * 9});
}

INSTANTIATE_TEST_SUITE_P(Isas, GemmS8,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni,
                                           Isa::kAvx512Vnni),
                         [](const auto& info) {
                           std::string s(isa_name(info.param));
                           for (char& ch : s) ch = ch == '-' ? '_' : ch;
                           return s;
                         });

TEST(CpuInfo, NamesAndBest) {
  EXPECT_EQ(isa_name(Isa::kScalar), "scalar");
  EXPECT_EQ(isa_name(Isa::kAvx2), "avx2");
  EXPECT_EQ(isa_name(Isa::kAvxVnni), "avx-vnni");
  EXPECT_EQ(isa_name(Isa::kAvx512Vnni), "avx512-vnni");
  EXPECT_TRUE(isa_supported(Isa::kScalar));
  EXPECT_TRUE(isa_supported(best_isa()));
}

// The scalar definition, written out independently of ref:: for the quantizer checks.
int8_t quant_one(float x, float scale) {
  const float r = std::nearbyint(x / scale);
  return static_cast<int8_t>(r < -127.0f ? -127.0f : (r > 127.0f ? 127.0f : r));
}

TEST(QuantizeS8, PerTokenMatchesDefinition) {
  set_num_threads(2);
  for (int64_t k : {1, 7, 8, 31, 32, 33, 100, 4097}) {
    const int64_t m = 9;
    auto x = random_f32(m * k, static_cast<uint32_t>(k), -5.0f, 5.0f);
    x[0] = 1e30f;                                     // huge outlier in row 0
    for (int64_t j = 0; j < k; ++j) x[k + j] = 0.0f;  // zero row 1
    std::vector<int8_t> q(m * k), q_ref(m * k);
    std::vector<float> s(m), s_ref(m);
    quantize_s8_per_token(x.data(), m, k, q.data(), s.data());
    ref::quantize_s8_per_token(x.data(), m, k, q_ref.data(), s_ref.data());
    ASSERT_EQ(q, q_ref) << "k=" << k;
    ASSERT_EQ(std::memcmp(s.data(), s_ref.data(), m * sizeof(float)), 0) << "k=" << k;
    EXPECT_EQ(s[1], 1e-5f / 127.0f);
    for (int64_t i = 0; i < m; ++i) {
      float amax = 0.0f;
      for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(x[i * k + j]));
      ASSERT_EQ(s[i], std::max(amax, 1e-5f) / 127.0f);
      for (int64_t j = 0; j < k; ++j) ASSERT_EQ(q[i * k + j], quant_one(x[i * k + j], s[i]));
    }
  }
}

// The norms fused with per-token quantization must give exactly the unfused results: the norm
// output of ops::rms_norm / ops::layer_norm, then quantize_s8_per_token of it.
TEST(QuantizeS8, FusedNormMatchesNormThenQuantize) {
  set_num_threads(2);
  for (int64_t d : {1, 33, 128, 4097}) {
    const int64_t m = 37;
    auto x = random_f32(m * d, static_cast<uint32_t>(d), -3.0f, 3.0f);
    x[d / 2] = 400.0f;  // an outlier channel in row 0
    const auto w = random_f32(d, 5, 0.5f, 90.0f), b = random_f32(d, 6, -1.0f, 1.0f);
    for (bool rms : {true, false}) {
      std::vector<float> y(m * d), y_ref(m * d), s(m), s_ref(m);
      std::vector<int8_t> q(m * d), q_ref(m * d);
      if (rms) {
        ops::rms_norm_q8(x.data(), w.data(), 1e-6f, y.data(), q.data(), s.data(), m, d);
        ops::rms_norm(x.data(), w.data(), 1e-6f, y_ref.data(), m, d);
      } else {
        ops::layer_norm_q8(x.data(), w.data(), b.data(), 1e-5f, y.data(), q.data(), s.data(), m, d);
        ops::layer_norm(x.data(), w.data(), b.data(), 1e-5f, y_ref.data(), m, d);
      }
      ref::quantize_s8_per_token(y_ref.data(), m, d, q_ref.data(), s_ref.data());
      ASSERT_EQ(std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)), 0)
          << "d=" << d << " rms=" << rms;
      ASSERT_EQ(q, q_ref) << "d=" << d << " rms=" << rms;
      ASSERT_EQ(std::memcmp(s.data(), s_ref.data(), s.size() * sizeof(float)), 0)
          << "d=" << d << " rms=" << rms;
    }
  }
}

TEST(QuantizeS8, TiesRoundHalfToEven) {
  // absmax 127 gives scale exactly 1, so x / scale lands exactly on .5 ties.
  std::vector<float> x = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 3.49f};
  while (x.size() < 40) x.push_back(static_cast<float>(x.size()) + 0.5f);
  const int64_t k = static_cast<int64_t>(x.size());
  std::vector<int8_t> q(k);
  float s = 0.0f;
  quantize_s8_per_token(x.data(), 1, k, q.data(), &s);
  ASSERT_EQ(s, 1.0f);
  const std::vector<int8_t> head = {127, 0, 2, 2, 0, -2, -2, 126, -126, 3};
  for (size_t j = 0; j < head.size(); ++j) EXPECT_EQ(q[j], head[j]) << j;
  for (int64_t j = 10; j < k; ++j) EXPECT_EQ(q[j], quant_one(x[j], 1.0f)) << j;
}

TEST(QuantizeS8, WithScaleClampsAndMatches) {
  set_num_threads(2);
  for (int64_t n : {0, 1, 31, 32, 33, 1000, 200003}) {
    auto x = random_f32(n, static_cast<uint32_t>(n) + 7, -300.0f, 300.0f);
    if (n > 2) {
      x[0] = 1e30f;
      x[1] = -1e30f;
      x[2] = 0.7f * 0.5f;  // a tie at scale 0.7 up to rounding of the division
    }
    std::vector<int8_t> q(n), q_ref(n);
    quantize_s8_with_scale(x.data(), n, 0.7f, q.data());
    ref::quantize_s8_with_scale(x.data(), n, 0.7f, q_ref.data());
    ASSERT_EQ(q, q_ref) << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(q[i], quant_one(x[i], 0.7f)) << i;
    if (n > 2) {
      EXPECT_EQ(q[0], 127);
      EXPECT_EQ(q[1], -127);
    }
  }
  std::vector<int8_t> q(1);
  const float x = 1.0f;
  EXPECT_THROW(quantize_s8_with_scale(&x, 1, 0.0f, q.data()), Error);
}

}  // namespace
}  // namespace sq::cpu
