// Contract between the ISA-independent GEMM driver (gemm_s8.cc) and the per-ISA tile kernels
// (gemm_s8_avx2.cc, gemm_s8_avxvnni.cc, gemm_s8_avx512vnni.cc), each compiled with its own flags.
//
// Packed W panel (nr columns): for each group g of 4 k's, nr × 4 bytes; column j's bytes are
// W[n0 + j, 4g .. 4g + 3]; missing rows/columns are zero.
// Packed A micro-panel (mr rows): for each group g, mr × 4 bytes, row i's bytes A[i0 + i, 4g ..];
// VNNI kernels get a + 128 (as u8, i.e. a ^ 0x80), AVX2 gets a as is; K padding is a = 0 (as
// 128 for VNNI), which the zero weight padding cancels.
#pragma once

#include <cstdint>

#include "backend/cpu/gemm_s8.h"

namespace sq::cpu::detail {

// One tile of mr ≤ kernel.mr rows × nr ≤ kernel.nr columns; all pointers already offset to the
// tile's first row/column.
struct TileArgs {
  const uint8_t* a;     // packed A micro-panel with exactly mr rows
  const int8_t* w;      // packed W panel
  int64_t k4;           // number of 4-byte K groups
  int mr, nr;           // valid rows / columns
  const int32_t* comp;  // per-column compensation to subtract, or null
  int32_t* c;           // int32 output (when y is null)
  float* y;             // fp32 output with the dequantizing epilogue
  int64_t ldc;          // row stride of c / y in elements
  const float* sx;      // row scale of the tile's first row
  int64_t sx_stride;    // 1 per token, 0 per tensor
  const float* sw;      // column scale of the first column
  int64_t sw_stride;    // 1 per channel, 0 per tensor
  const float* bias;    // bias of the first column, or null
};

struct IsaKernels {
  int nr;         // panel width (columns)
  int mr;         // largest micro-panel height
  bool a_offset;  // A fed as a + 128 (and W carries per-column compensation)
  void (*tile)(const TileArgs& t);
};

// Defined by the ISA files; never called unless isa_supported() says so.
const IsaKernels& avx2_kernels();
const IsaKernels& avxvnni_kernels();
const IsaKernels& avx512vnni_kernels();

}  // namespace sq::cpu::detail
