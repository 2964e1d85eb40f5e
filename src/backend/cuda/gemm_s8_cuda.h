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
};

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

}  // namespace sq::cuda
