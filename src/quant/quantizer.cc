#include "quant/quantizer.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace sq::quant {

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

void fake_quant_per_token(float* x, int64_t m, int64_t k, float* scales_out) {
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          float* row = x + i * k;
          const float s = scale_from_absmax(absmax(row, k));
          for (int64_t j = 0; j < k; ++j) row[j] = fake_quant_value(row[j], s);
          if (scales_out) scales_out[i] = s;
        }
      },
      8);
}

void fake_quant_per_tensor(float* x, int64_t m, int64_t k, float* scale_out) {
  const float s = scale_from_absmax(absmax(x, m * k));
  fake_quant_static(x, m * k, s);
  if (scale_out) *scale_out = s;
}

void fake_quant_static(float* x, int64_t n, float scale) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) x[i] = fake_quant_value(x[i], scale);
      },
      4096);
}

void quantize_weight_per_channel(const float* w, int64_t n, int64_t k, int8_t* q, float* scales) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const float s = scale_from_absmax(absmax(w + r * k, k));
          scales[r] = s;
          for (int64_t j = 0; j < k; ++j) q[r * k + j] = quantize_value(w[r * k + j], s);
        }
      },
      4);
}

void quantize_weight_per_tensor(const float* w, int64_t n, int64_t k, int8_t* q, float* scale) {
  const float s = scale_from_absmax(absmax(w, n * k));
  *scale = s;
  parallel_for(
      n * k,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) q[i] = quantize_value(w[i], s);
      },
      4096);
}

void fake_quant_weight(float* w, int64_t n, int64_t k, bool per_channel) {
  if (per_channel) {
    fake_quant_per_token(w, n, k);  // a row of W is an output channel
  } else {
    fake_quant_per_tensor(w, n, k);
  }
}

}  // namespace sq::quant
