// The symmetric INT8 quantizers of NUMERICS.md §1, shared by fake-quant, real INT8 and export:
//   scale = max(absmax, 1e-5) / 127,  q = clamp(round_half_even(x / scale), -127, 127).
// Division, not multiplication by 1/scale, and nearbyint under the default rounding mode, so the
// results equal torch.round(x / scale) bit for bit. -128 is never produced.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace sq::quant {

inline constexpr float kQMax = 127.0f;
inline constexpr float kMinAbsMax = 1e-5f;

inline float scale_from_absmax(float absmax) { return std::max(absmax, kMinAbsMax) / kQMax; }

inline int8_t quantize_value(float x, float scale) {
  float q = std::nearbyint(x / scale);
  q = std::min(std::max(q, -kQMax), kQMax);
  return static_cast<int8_t>(q);
}

inline float fake_quant_value(float x, float scale) {
  return static_cast<float>(quantize_value(x, scale)) * scale;
}

float absmax(const float* x, int64_t n);

// Fake-quantizes x[m, k] in place. Per-token: one scale per row; per-tensor: one scale over all of
// x (dynamic); static: the given scale. Scales are written to `scales_out` when non-null
// (m entries for per-token, 1 otherwise).
void fake_quant_per_token(float* x, int64_t m, int64_t k, float* scales_out = nullptr);
void fake_quant_per_tensor(float* x, int64_t m, int64_t k, float* scale_out = nullptr);
void fake_quant_static(float* x, int64_t n, float scale);

// Weight quantization of w[n, k]: per-channel (one scale per output row) or per-tensor.
// q receives int8 values; scales has n entries (per-channel) or 1 (per-tensor).
void quantize_weight_per_channel(const float* w, int64_t n, int64_t k, int8_t* q, float* scales);
void quantize_weight_per_tensor(const float* w, int64_t n, int64_t k, int8_t* q, float* scale);

// Replaces w[n, k] by its fake-quantized value q·scale (per-channel or per-tensor).
void fake_quant_weight(float* w, int64_t n, int64_t k, bool per_channel);

}  // namespace sq::quant
