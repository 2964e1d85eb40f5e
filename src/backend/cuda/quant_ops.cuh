// Quantization and statistics kernels of the CUDA engine beyond the fused per-token ones
// (norm_quant_cuda.h), with NUMERICS §1's rules (scale = max(absmax, 1e-5) / 127, q =
// clamp(rint(x / scale), ±127) with a true division):
//  - per-tensor activation quantization, dynamic (abs-max of the whole tensor, found on the
//    device) or static (a calibrated scale), writing the one scale the GEMM epilogue reads;
//  - fake quantization of column segments of a matrix in place (the --quant-bmm outputs of the
//    fused q|k|v GEMM: each projection is its own tensor), per token, per tensor or static;
//  - per-column abs-max accumulation for calibration (atomicMax on the bit patterns of
//    non-negative floats, whose integer order is their float order).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace sq::cuda::ops {

// absmax_slot: one float of device scratch (dynamic); static_scale: device pointer (static).
// Exactly one of them is non-null. scale_out: the scale used, for the epilogue.
void quantize_per_tensor(const float* x, int64_t n, float* absmax_slot, const float* static_scale,
                         int8_t* q, float* scale_out, cudaStream_t s);

enum class SegmentQuant { kPerToken, kPerTensorDynamic, kStatic };
// y [m, ld]: columns [col0, col0 + width) fake-quantized in place. static_scale: host value
// (kStatic). absmax_slot: one float of device scratch (kPerTensorDynamic).
void fake_quant_segment(float* y, int64_t m, int64_t ld, int64_t col0, int64_t width,
                        SegmentQuant mode, float static_scale, float* absmax_slot, cudaStream_t s);

// The same quantization of a column segment, written as int8 rows into a cache instead:
// q[(*pos + t) · width + j] and scales[*pos + t] for t < m (the --quant-bmm int8 KV cache).
void quantize_segment_to_cache(const float* y, int64_t m, int64_t ld, int64_t col0, int64_t width,
                               SegmentQuant mode, float static_scale, float* absmax_slot,
                               const int* pos, int8_t* q, float* scales, cudaStream_t s);

// acc[j] = max(acc[j], max_i |x[i, j]|) for x [m, n].
void col_absmax(const float* x, int64_t m, int64_t n, float* acc, cudaStream_t s);

}  // namespace sq::cuda::ops
