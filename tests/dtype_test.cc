#include "core/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

namespace sq {
namespace {

// Independent definition of the f16 value from its fields.
double f16_reference(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(DType, EveryF16PatternUpcastsExactly) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = f16_to_f32(h);
    const double ref = f16_reference(h);
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(f)) << i;
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), ref) << "pattern " << i;
    ASSERT_EQ(std::signbit(f), (h >> 15) != 0) << i;
    ASSERT_EQ(f32_to_f16(f), h) << "round trip of pattern " << i;
  }
}

TEST(DType, EveryBF16PatternUpcastsExactly) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float f = bf16_to_f32(b);
    ASSERT_EQ(std::bit_cast<uint32_t>(f), i << 16);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    } else {
      ASSERT_EQ(f32_to_bf16(f), b) << i;
    }
  }
}

// Every midpoint between consecutive finite f16 values rounds to the even neighbour, and values
// just off the midpoint round to the nearer one.
TEST(DType, F16RoundsHalfToEvenAtEveryMidpoint) {
  for (uint32_t i = 0; i < 0x7bff; ++i) {
    const float a = f16_to_f32(static_cast<uint16_t>(i));
    const float b = f16_to_f32(static_cast<uint16_t>(i + 1));
    const float mid = (a + b) / 2;  // exact in f32
    const uint16_t even = (i % 2 == 0) ? static_cast<uint16_t>(i) : static_cast<uint16_t>(i + 1);
    ASSERT_EQ(f32_to_f16(mid), even) << i;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), i) << i;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, INFINITY)), i + 1) << i;
    ASSERT_EQ(f32_to_f16(-mid), even | 0x8000) << i;
  }
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // the midpoint to 2^16 rounds to Inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -26)), 0);  // below half the smallest subnormal
}

TEST(DType, BF16RoundsHalfToEven) {
  const float one = 1.0f;
  const float half_ulp = std::ldexp(1.0f, -8);               // bf16 has 7 mantissa bits
  EXPECT_EQ(f32_to_bf16(one + half_ulp), f32_to_bf16(one));  // tie -> even
  EXPECT_EQ(f32_to_bf16(one + 3 * half_ulp), f32_to_bf16(one + 4 * half_ulp));  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::nextafter(one + half_ulp, 2.0f)), f32_to_bf16(one + 2 * half_ulp));
  EXPECT_EQ(f32_to_bf16(3.0e38f * 1.2f), 0x7f80);  // overflow to Inf
}

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8, DType::kI32}) {
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
}

TEST(DType, BulkConversionsHandleUnalignedData) {
  alignas(8) unsigned char buf[2 * 5 + 1];
  const float src[5] = {1.5f, -2.25f, 0.0f, 65504.0f, 1e-7f};
  from_f32(src, DType::kF16, buf + 1, 5);
  float back[5];
  to_f32(DType::kF16, buf + 1, back, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i], f16_to_f32(f32_to_f16(src[i])));
}

}  // namespace
}  // namespace sq
