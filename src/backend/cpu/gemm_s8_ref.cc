// Scalar definitions of the INT8 GEMM, its epilogue and the quantizers: the oracle the SIMD paths
// are tested against, and the kScalar path itself. Straightforward loops on purpose; the only
// subtleties are the fixed fp32 operation order of dequant and the division in the quantizers.
// Compiled without FMA contraction (-ffp-contract=off) so that the fp32 order is kept.
#include <algorithm>
#include <cmath>

#include "backend/cpu/gemm_s8.h"

namespace sq::cpu::ref {

void gemm_s8s8s32(const int8_t* a, int64_t m, int64_t k, const int8_t* w, int64_t n, int32_t* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += int32_t{a[i * k + p]} * int32_t{w[j * k + p]};
      c[i * n + j] = acc;
    }
  }
}

float dequant(int32_t acc, const Epilogue& e, int64_t row, int64_t col) {
  float f = static_cast<float>(acc) * e.sx[e.per_token ? row : 0];
  f = f * e.sw[e.per_channel ? col : 0];
  if (e.bias) f = f + e.bias[col];
  return f;
}

void gemm_s8_f32(const int8_t* a, int64_t m, int64_t k, const int8_t* w, int64_t n,
                 const Epilogue& e, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += int32_t{a[i * k + p]} * int32_t{w[j * k + p]};
      y[i * n + j] = dequant(acc, e, i, j);
    }
  }
}

void quantize_s8_with_scale(const float* x, int64_t n, float scale, int8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(x[i] / scale);
    q[i] = static_cast<int8_t>(std::min(std::max(r, -127.0f), 127.0f));
  }
}

void quantize_s8_per_token(const float* x, int64_t m, int64_t k, int8_t* q, float* scales) {
  for (int64_t i = 0; i < m; ++i) {
    float amax = 0.0f;
    for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(x[i * k + j]));
    scales[i] = std::max(amax, 1e-5f) / 127.0f;
    quantize_s8_with_scale(x + i * k, k, scales[i], q + i * k);
  }
}

}  // namespace sq::cpu::ref
