#include "quant/quantizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/scheme.h"

namespace sq::quant {
namespace {

TEST(Quantizer, ZeroRowUsesTheScaleClamp) {
  std::vector<float> x(8, 0.0f);
  float scale = 0;
  fake_quant_per_token(x.data(), 1, 8, &scale);
  EXPECT_FLOAT_EQ(scale, 1e-5f / 127.0f);
  for (float v : x) EXPECT_EQ(v, 0.0f);
  std::vector<int8_t> q(8);
  float ws = 0;
  quantize_weight_per_tensor(x.data(), 1, 8, q.data(), &ws);
  EXPECT_FLOAT_EQ(ws, 1e-5f / 127.0f);
}

TEST(Quantizer, TiesRoundHalfToEven) {
  // absmax 127 -> scale 1: x / scale lands exactly on .5 ties.
  const float s = scale_from_absmax(127.0f);
  ASSERT_EQ(s, 1.0f);
  EXPECT_EQ(quantize_value(0.5f, s), 0);
  EXPECT_EQ(quantize_value(1.5f, s), 2);
  EXPECT_EQ(quantize_value(2.5f, s), 2);
  EXPECT_EQ(quantize_value(-2.5f, s), -2);
  EXPECT_EQ(quantize_value(-3.5f, s), -4);
  EXPECT_EQ(quantize_value(126.5f, s), 126);
}

TEST(Quantizer, DividesRatherThanMultipliesByTheInverse) {
  // x / s and x * (1/s) round differently right at some .5 ties; the quantizer must use the
  // division, as torch does. Search the neighbourhood of every tie for such values.
  int differ = 0;
  for (float amax : {3.0f, 0.7f, 11.3f, 1e-3f, 523.1f, 0.0911f}) {
    const float s = scale_from_absmax(amax);
    for (int k = -127; k < 127; ++k) {
      float x = (k + 0.5f) * s;
      for (int step = 0; step < 4; ++step, x = std::nextafter(x, INFINITY)) {
        const float div = std::nearbyint(x / s), mul = std::nearbyint(x * (1.0f / s));
        EXPECT_EQ(quantize_value(x, s), static_cast<int8_t>(std::clamp(div, -127.0f, 127.0f)));
        differ += div != mul;
      }
    }
  }
  EXPECT_GT(differ, 0) << "no distinguishing value found; the test lost its power";
}

TEST(Quantizer, StaticScaleClampsBeyondRange) {
  std::vector<float> x = {1.0f, 5.0f, -7.0f, 0.5f};
  const float s = scale_from_absmax(1.0f);
  fake_quant_static(x.data(), 4, s);
  EXPECT_FLOAT_EQ(x[0], 127 * s);
  EXPECT_FLOAT_EQ(x[1], 127 * s);   // clamped, never 128
  EXPECT_FLOAT_EQ(x[2], -127 * s);  // clamped to -127, never -128
  EXPECT_EQ(quantize_value(-1e9f, s), -127);
}

TEST(Quantizer, OutlierChannelCrushesPerTokenButNotPerChannelWeights) {
  // One 1000x channel: per-token quantization of that row zeroes the small channels.
  std::vector<float> x(64, 0.01f);
  x[7] = 10.0f;
  fake_quant_per_token(x.data(), 1, 64);
  EXPECT_FLOAT_EQ(x[7], 10.0f);
  for (int j = 0; j < 64; ++j) {
    if (j != 7) {
      EXPECT_EQ(x[j], 0.0f) << j;
    }
  }
  // Per-channel weights keep each output row's own range: a 1000x row does not crush the others.
  std::vector<float> w = {63.5f, 127.0f, 62500.0f, 127000.0f};
  std::vector<int8_t> q(4);
  std::vector<float> sc(2);
  quantize_weight_per_channel(w.data(), 2, 2, q.data(), sc.data());
  EXPECT_EQ(sc[0], 1.0f);
  EXPECT_EQ(sc[1], 1000.0f);
  EXPECT_EQ(q[0], 64);  // 63.5 -> 64 (even)
  EXPECT_EQ(q[1], 127);
  EXPECT_EQ(q[2], 62);  // 62.5 -> 62 (even)
  EXPECT_EQ(q[3], 127);
  // Per-tensor, the same matrix loses the small row entirely.
  float st = 0;
  quantize_weight_per_tensor(w.data(), 2, 2, q.data(), &st);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 0);
}

TEST(Quantizer, PerTensorUsesOneScaleForAllRows) {
  std::vector<float> x = {1, 2, 3, 254};
  float s = 0;
  fake_quant_per_tensor(x.data(), 2, 2, &s);
  EXPECT_FLOAT_EQ(s, 2.0f);
  EXPECT_EQ(x[0], 0.0f);  // 0.5 -> 0 (even)
  EXPECT_EQ(x[1], 2.0f);
  EXPECT_EQ(x[2], 4.0f);  // 1.5 -> 2
  EXPECT_EQ(x[3], 254.0f);
}

TEST(Scheme, NamesAndGranularities) {
  for (auto n : {"w8a8", "o1", "o2", "o3", "channel-token"}) {
    ASSERT_TRUE(parse_scheme(n).has_value()) << n;
    EXPECT_EQ(scheme_name(*parse_scheme(n)), n);
  }
  EXPECT_FALSE(parse_scheme("int4").has_value());
  EXPECT_EQ(scheme_spec(Scheme::kO3).act, ActGranularity::kPerTensorStatic);
  EXPECT_EQ(scheme_spec(Scheme::kChannelToken).weight, WeightGranularity::kPerChannel);
  EXPECT_EQ(scheme_spec(Scheme::kO1).weight, WeightGranularity::kPerTensor);
}

}  // namespace
}  // namespace sq::quant
