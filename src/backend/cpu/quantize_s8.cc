// Dispatch for the activation quantizers of gemm_s8.h: the AVX2 row kernels when the CPU has
// AVX2 (bit-identical to ref:: — IEEE division, round-half-even, clamp), else the scalar ref.
// Rows are independent, so splitting them over threads cannot change results.
#include <algorithm>

#include "backend/cpu/gemm_s8.h"
#include "backend/cpu/quantize_s8_internal.h"
#include "core/error.h"
#include "core/parallel.h"

namespace sq::cpu {
namespace {

bool use_avx2() {
  static const bool yes = best_isa() != Isa::kScalar;
  return yes;
}

}  // namespace

void quantize_s8_with_scale(const float* x, int64_t n, float scale, int8_t* q) {
  SQ_CHECK(n >= 0 && scale > 0.0f, "quantize_s8_with_scale: need n >= 0 and scale > 0 (got {})",
           scale);
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        if (use_avx2()) {
          detail::quantize_row_avx2(x + b, e - b, scale, q + b);
        } else {
          ref::quantize_s8_with_scale(x + b, e - b, scale, q + b);
        }
      },
      int64_t{1} << 16);
}

void quantize_s8_row(const float* x, int64_t k, int8_t* q, float* scale) {
  if (!use_avx2()) {
    ref::quantize_s8_per_token(x, 1, k, q, scale);
    return;
  }
  *scale = std::max(detail::absmax_avx2(x, k), 1e-5f) / 127.0f;
  detail::quantize_row_avx2(x, k, *scale, q);
}

void quantize_s8_per_token(const float* x, int64_t m, int64_t k, int8_t* q, float* scales) {
  SQ_CHECK(m >= 0 && k >= 0, "quantize_s8_per_token: negative shape [{}, {}]", m, k);
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        if (!use_avx2()) {
          ref::quantize_s8_per_token(x + b * k, e - b, k, q + b * k, scales + b);
          return;
        }
        for (int64_t i = b; i < e; ++i) quantize_s8_row(x + i * k, k, q + i * k, scales + i);
      },
      std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k)));
}

}  // namespace sq::cpu
