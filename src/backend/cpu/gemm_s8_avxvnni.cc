// AVX-VNNI tile kernel. ISA: AVX2 + AVX-VNNI (VEX ymm vpdpbusd), compiled with -mavx2 -mavxvnni;
// called only after a CPUID check. Same a + 128 / per-column compensation scheme as the
// AVX-512 VNNI kernel (exact: sums wrap mod 2³² and the true result fits int32).
// Tile: 6 rows × 16 columns (2 ymm) = 12 accumulators + 2 weight vectors + 1 broadcast (16 ymm).
#include <immintrin.h>

#include "backend/cpu/gemm_s8_internal.h"

namespace sq::cpu::detail {
namespace {

struct Tr {
  using V = __m256i;
  using F = __m256;
  using A = __m256i;
  // vpdpbusd has ~5 cycles of latency: keep ≥ 8 independent accumulators in decode tiles.
  static constexpr int kMinAccumulators = 8;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_si256(); }
  static V load_w(const int8_t* p) { return _mm256_load_si256(reinterpret_cast<const V*>(p)); }
  static A bcast_a(const uint8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static V dot(V acc, A a, V w) { return _mm256_dpbusd_avx_epi32(acc, a, w); }
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

constexpr int kMr = 6;
constexpr int kNv = 2;

void tile(const TileArgs& t) { tile_dispatch<kMr, kNv>(t); }

}  // namespace

const IsaKernels& avxvnni_kernels() {
  static const IsaKernels k{kNv * Tr::kLanes, kMr, true, &tile};
  return k;
}

}  // namespace sq::cpu::detail
