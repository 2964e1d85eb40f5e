// AVX2 quantizer rows. ISA: AVX2 (compiled with -mavx2; no FMA is involved). Exactness: vdivps is
// the IEEE division, vroundps(nearest) equals std::nearbyint under the default rounding mode, and
// the clamp happens in fp32 before the (then exact) conversion, exactly as in ref::.
// Builtins instead of <cmath>: inline std:: functions compiled here with AVX2 could be merged by
// the linker into baseline callers. max is order-independent for non-NaN inputs, so the vector
// absmax equals the scalar one.
#include <immintrin.h>

#include "backend/cpu/quantize_s8_internal.h"

namespace sq::cpu::detail {

float absmax_avx2(const float* x, int64_t n) {
  const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + i), mask));
    m1 = _mm256_max_ps(m1, _mm256_and_ps(_mm256_loadu_ps(x + i + 8), mask));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float r = 0.0f;
  for (float v : lanes) r = v > r ? v : r;
  for (; i < n; ++i) {
    const float v = __builtin_fabsf(x[i]);
    r = v > r ? v : r;
  }
  return r;
}

void quantize_row_avx2(const float* x, int64_t n, float scale, int8_t* q) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  auto one = [&](const float* p) {
    __m256 r = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(p), s),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = one(x + i), b = one(x + i + 8), c = one(x + i + 16), d = one(x + i + 24);
    // packs works within 128-bit lanes; the permute restores element order.
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(v, perm));
  }
  for (; i < n; ++i) {
    float r = __builtin_nearbyintf(x[i] / scale);
    r = r < -127.0f ? -127.0f : r;
    r = r > 127.0f ? 127.0f : r;
    q[i] = static_cast<int8_t>(r);
  }
}

}  // namespace sq::cpu::detail
