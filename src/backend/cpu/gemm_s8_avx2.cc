// AVX2 tile kernel (no VNNI). ISA: AVX2, compiled with -mavx2; called after a CPUID check.
// Scheme (sign trick): vpmaddubsw(|a| as u8, sign(w, a)) forms a·w pairwise with int16 sums;
// |a| ≤ 128 and |w| ≤ 127 make each pair sum ≤ 32512 < 2¹⁵, so nothing saturates; vpmaddwd with
// ones widens pairs to int32. Exact, but needs W ≠ -128 (vpsignb would wrap), which pack checks.
// A is fed as is (no offset, no compensation).
// Tile: 3 rows × 16 columns (2 ymm) = 6 accumulators + 2 weights + broadcast, |a|, ones, temps
// (4 rows made GCC spill accumulators to the stack).
#include <immintrin.h>

#include "backend/cpu/gemm_s8_internal.h"

namespace sq::cpu::detail {
namespace {

struct Tr {
  using V = __m256i;
  using F = __m256;
  struct A {
    __m256i s, u;  // broadcast a (for the sign) and |a|
  };
  // The accumulator chain is a 1-cycle vpaddd: one set is enough (two made GCC spill).
  static constexpr int kMinAccumulators = 0;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_si256(); }
  static V load_w(const int8_t* p) { return _mm256_load_si256(reinterpret_cast<const V*>(p)); }
  static A bcast_a(const uint8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    const __m256i s = _mm256_set1_epi32(v);
    return A{s, _mm256_abs_epi8(s)};
  }
  static V dot(V acc, const A& a, V w) {
    const __m256i p16 = _mm256_maddubs_epi16(a.u, _mm256_sign_epi8(w, a.s));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }
  static V add_i32(V x, V y) { return _mm256_add_epi32(x, y); }
  static V sub_i32(V x, V y) { return _mm256_sub_epi32(x, y); }
  static V load_i32(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const V*>(p)); }
  static void store_i32(int32_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<V*>(p), v); }
  static F to_f32(V v) { return _mm256_cvtepi32_ps(v); }
  static F bcast_f(float x) { return _mm256_set1_ps(x); }
  static F load_f(const float* p) { return _mm256_loadu_ps(p); }
  static void store_f(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F mul_f(F x, F y) { return _mm256_mul_ps(x, y); }
  static F add_f(F x, F y) { return _mm256_add_ps(x, y); }
};

#include "backend/cpu/gemm_s8_tile.inc"

constexpr int kMr = 3;
constexpr int kNv = 2;

void tile(const TileArgs& t) { tile_dispatch<kMr, kNv>(t); }

}  // namespace

const IsaKernels& avx2_kernels() {
  static const IsaKernels k{kNv * Tr::kLanes, kMr, false, &tile};
  return k;
}

}  // namespace sq::cpu::detail
