// Element types of tensors on disk and in memory, and the exact conversions between them.
// f16/bf16 -> f32 is exact for every bit pattern (NaN payloads included); f32 -> f16/bf16 rounds to
// nearest even, as PyTorch's .to(dtype) does, so a checkpoint we write matches one torch would
// write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sq {

enum class DType : uint8_t { kF32, kF16, kBF16, kI8, kI32, kI64, kU8, kBool, kF64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // safetensors spelling: "F32", "BF16", ...
std::optional<DType> dtype_from_name(std::string_view name);
bool is_float(DType t);

float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

// Converts n elements of a floating type (F32/F16/BF16/F64) to f32. `src` may be unaligned.
void to_f32(DType src_type, const void* src, float* dst, size_t n);
// Converts n f32 values to F32/F16/BF16 into `dst` (may be unaligned).
void from_f32(const float* src, DType dst_type, void* dst, size_t n);

}  // namespace sq
