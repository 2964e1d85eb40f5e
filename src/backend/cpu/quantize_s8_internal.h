// Row kernels behind quantize_s8.cc, compiled with -mavx2 in quantize_s8_avx2.cc. Callers check
// for AVX2 first. Results are bit-identical to the scalar definitions in gemm_s8_ref.cc.
#pragma once

#include <cstdint>

namespace sq::cpu::detail {

float absmax_avx2(const float* x, int64_t n);  // max |x| (0 for n = 0)
void quantize_row_avx2(const float* x, int64_t n, float scale, int8_t* q);

}  // namespace sq::cpu::detail
