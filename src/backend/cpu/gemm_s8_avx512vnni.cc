// AVX-512 VNNI tile kernel. ISA: AVX-512F/BW/VL + AVX512_VNNI (zmm vpdpbusd), compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni; called only after a CPUID check.
// Scheme: vpdpbusd multiplies unsigned A bytes by signed W bytes, so A is fed as a + 128 and the
// packed W carries 128·Σ_k w[n, k] per column, subtracted once per tile. All sums wrap mod 2³²
// and the true result fits int32 (K ≤ kMaxK), so the result is exact.
// Tile: 6 rows × 64 columns (4 zmm) = 24 accumulators + 4 weight vectors + 1 broadcast.
#include <immintrin.h>

// GCC 12 warns inside _mm512_cvtepi32_ps (_mm512_undefined_ps); a header false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "backend/cpu/gemm_s8_internal.h"

namespace sq::cpu::detail {
namespace {

struct Tr {
  using V = __m512i;
  using F = __m512;
  using A = __m512i;
  // vpdpbusd has ~5 cycles of latency: keep ≥ 8 independent accumulators in decode tiles.
  static constexpr int kMinAccumulators = 8;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_si512(); }
  static V load_w(const int8_t* p) { return _mm512_load_si512(p); }
  static A bcast_a(const uint8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static V dot(V acc, A a, V w) { return _mm512_dpbusd_epi32(acc, a, w); }
  static V add_i32(V x, V y) { return _mm512_add_epi32(x, y); }
  static V sub_i32(V x, V y) { return _mm512_sub_epi32(x, y); }
  static V load_i32(const int32_t* p) { return _mm512_loadu_si512(p); }
  static void store_i32(int32_t* p, V v) { _mm512_storeu_si512(p, v); }
  static F to_f32(V v) { return _mm512_cvtepi32_ps(v); }
  static F bcast_f(float x) { return _mm512_set1_ps(x); }
  static F load_f(const float* p) { return _mm512_loadu_ps(p); }
  static void store_f(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F mul_f(F x, F y) { return _mm512_mul_ps(x, y); }
  static F add_f(F x, F y) { return _mm512_add_ps(x, y); }
};

#include "backend/cpu/gemm_s8_tile.inc"

constexpr int kMr = 6;
constexpr int kNv = 4;

void tile(const TileArgs& t) { tile_dispatch<kMr, kNv>(t); }

}  // namespace

const IsaKernels& avx512vnni_kernels() {
  static const IsaKernels k{kNv * Tr::kLanes, kMr, true, &tile};
  return k;
}

}  // namespace sq::cpu::detail
