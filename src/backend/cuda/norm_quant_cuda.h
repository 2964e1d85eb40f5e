// The GPU half of "per-token activation quantization fused with the norm that precedes the
// Linear" (NUMERICS §1, §2): q[m, d] int8 and scales[m] from RMSNorm(x) · weight in one kernel,
// x in fp32 or bf16. The sum of squares is a parallel reduction, so y can differ from the CPU's
// sequential fp32 sum within that sum's error bound (about d·2⁻²⁴ relative); the scale inherits
// it, while q, where the norm's scale cancels, differs by at most 1 and only at a rounding
// boundary. d ≤ 8192.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_check.h"

namespace sq::cuda {

void rms_norm_quant_s8(const float* x, const float* w, float eps, int64_t m, int64_t d, int8_t* q,
                       float* scales, cudaStream_t stream);
// x += res (written back), then as rms_norm_quant_s8: the residual add fused with the next norm.
void add_rms_norm_quant_s8(float* x, const float* res, const float* w, float eps, int64_t m,
                           int64_t d, int8_t* q, float* scales, cudaStream_t stream);
// silu(gate) · up of rows [gate (ffn) | up (ffn)], quantized per token into q [m, ffn];
// interleaved: rows in gemm_s8_cuda.h's kGluBlock layout (gate block, then its up block), which
// needs ffn % kGluBlock == 0.
void silu_mul_quant_s8(const float* gu, int64_t m, int64_t ffn, int8_t* q, float* scales,
                       cudaStream_t stream, bool interleaved = false);
// Per-token quantization alone (inputs that no norm precedes: o_proj, down_proj), same rules.
void quantize_per_token_s8(const float* x, int64_t m, int64_t d, int8_t* q, float* scales,
                           cudaStream_t stream);
// Per-token quantization of rows whose max |x| is known (row_absmax [m]), same rules: one pass.
void quantize_rows_s8(const float* x, const float* row_absmax, int64_t m, int64_t d, int8_t* q,
                      float* scales, cudaStream_t stream);
void rms_norm_quant_s8(const uint16_t* x_bf16, const float* w, float eps, int64_t m, int64_t d,
                       int8_t* q, float* scales, cudaStream_t stream);

}  // namespace sq::cuda
