// INT8 GEMM on NVIDIA GPUs: C[m, n] = Σ_k A[m, k] · W[n, k] in int32 (exact), A and W row-major
// int8 (both K-major, the layout wgmma needs for 8-bit operands), optionally with the W8A8
// epilogue y[m, n] = bf16(float(acc) · sx[m or 0] · sw[n or 0] + bias[n]) computed in that order
// as the CPU reference does (gemm_s8.h), so the int32 results are bit-exact against it.
// The Hopper kernel (sm_90a) streams tiles with the tensor-memory accelerator into a multi-stage
// shared-memory ring guarded by mbarriers and multiplies them with wgmma m64n256k32 (m64n128k32 for
// medium M); other GPUs get a clear error for now. Requirements: K % 16 == 0 (TMA row strides are
// 16-byte multiples), device pointers, 16-byte aligned A and W.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_check.h"

namespace sq::cuda {

struct GemmS8Epilogue {
  const float* sx = nullptr;  // [m] (per_token) or [1]
  bool per_token = false;
  const float* sw = nullptr;  // [n] (per_channel) or [1]
  bool per_channel = false;
  const float* bias = nullptr;  // [n] or null
  bool f32_out = false;         // set by gemm_s8_f32
  // gemm_s8_f32 with M > kGemvMaxRows only: columns [y2_col, n) go to y2 [m, n - y2_col]
  // (row-major) instead of y, which then holds only columns [0, y2_col) (e.g. a fused q|k|v
  // GEMM writing v straight into a KV cache). y2_col: a multiple of 64.
  float* y2 = nullptr;
  int64_t y2_col = 0;
  // gemm_s8_silu_f32: max |y| of each row [m] (zeroed, then written by the call).
  float* row_absmax = nullptr;
};

// Gated MLPs (SiLU(gate) · up) keep the fused gate|up weight with its rows interleaved in blocks
// of kGluBlock: gate rows [64b, 64b + 64), then up rows [64b, 64b + 64), for b = 0, 1, ... Every
// 128-row block then holds matching gate and up columns, and in wgmma's accumulator layout one
// thread holds both values of an output (column c and c + 64 of a tile), so the GEMM can apply
// SiLU · up in its epilogue and write half the bytes.
inline constexpr int64_t kGluBlock = 64;
// The row of the plain [gate (ffn) | up (ffn)] concatenation that interleaved row r comes from.
inline int64_t glu_source_row(int64_t r, int64_t ffn) {
  const int64_t b = r / (2 * kGluBlock), i = r % (2 * kGluBlock);
  return i < kGluBlock ? b * kGluBlock + i : ffn + b * kGluBlock + (i - kGluBlock);
}

// Tile width of the M > 16 kernel: chosen per shape (kAuto), or forced by tests and benchmarks.
enum class GemmTileN { kAuto, k128, k256 };
void set_gemm_tile_override(GemmTileN t);

// True when the current device can run the sm_90a kernel.
bool gemm_s8_supported();

// M ≤ kGemvMaxRows runs the memory-bound decode kernel (dp4a, any sm_61+ GPU) instead of the
// tiled one; both entry points below dispatch on M.
inline constexpr int64_t kGemvMaxRows = 16;
// c (int32) when y is null, else y (bf16 with the epilogue).
void gemv_s8(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y, const GemmS8Epilogue& ep,
             int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// c: int32 [m, n]. Asynchronous on `stream`.
void gemm_s8s8s32(const int8_t* a, const int8_t* w, int32_t* c, int64_t m, int64_t n, int64_t k,
                  cudaStream_t stream);
// y: bf16 bits [m, n] (uint16_t). Asynchronous on `stream`.
void gemm_s8_bf16(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, uint16_t* y,
                  int64_t m, int64_t n, int64_t k, cudaStream_t stream);
// y: fp32 [m, n], the epilogue's value before the bf16 rounding (what the CPU engine computes).
void gemm_s8_f32(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, float* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t stream);

// y: fp32 [m, n / 2] = silu(gate) · up (quant_math.cuh's arithmetic) of the fp32 epilogue values,
// W [n, k] in the kGluBlock-interleaved layout (n % 128 == 0, so n / 2 % kGluBlock == 0), and
// ep.row_absmax [m] = each row's max |y| for its per-token quantization (quantize_rows_s8). The
// tiled kernel only (M > kGemvMaxRows, Hopper); decode runs gemm_s8_f32 into the interleaved
// layout and silu_mul_quant_s8(..., interleaved = true).
void gemm_s8_silu_f32(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, float* y,
                      int64_t m, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace sq::cuda
