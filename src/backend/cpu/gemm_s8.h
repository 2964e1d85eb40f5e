// CPU INT8 GEMM for W8A8 Linears: C[m, n] = Σ_k A[m, k] · W[n, k], exact in int32, plus a fused
// dequantizing epilogue and the symmetric activation quantizers of docs NUMERICS §1.
//
// Invariants:
// - Weights are int8 in [-127, 127]; PackedS8::pack rejects -128 with sq::Error (the AVX2 sign
//   trick negates weights, and -(-128) does not fit int8). Activations may be anything in
//   [-128, 127] (every path is exact for -128 too), but the quantizers never produce -128.
// - K ≤ kMaxK so that every exact sum fits int32 (127² · K < 2³¹).
// - Results (int32 and fp32) are bit-identical for every ISA and every thread count: each output
//   element is one exact integer sum followed by the same fp32 operations in the same order.
// - Kernels are chosen at run time (CPUID); the binary runs on any x86-64, SIMD paths need AVX2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace sq::cpu {

enum class Isa { kScalar, kAvx2, kAvxVnni, kAvx512Vnni };

// Largest K for which Σ_k 127·127 fits int32.
inline constexpr int64_t kMaxK = 131072;

std::string_view isa_name(Isa isa);  // "scalar", "avx2", "avx-vnni", "avx512-vnni"
bool isa_supported(Isa isa);         // run-time CPUID; scalar is always supported
// Best supported ISA; the environment variable SQ_CPU_ISA (one of the names above) overrides it
// and is an error when it names an unknown or unsupported ISA. Read once per process.
Isa best_isa();

// Weights [N, K] packed once (at load) into the layout of one ISA's kernel: column panels of the
// kernel's width, K in groups of 4 bytes, zero padded. VNNI layouts also keep 128·Σ_k w[n, k] per
// column, because their kernels feed A as unsigned a + 128 and subtract that afterwards.
class PackedS8 {
 public:
  PackedS8() = default;
  static PackedS8 pack(const int8_t* w, int64_t n, int64_t k, Isa isa);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  Isa isa() const { return isa_; }
  size_t bytes() const;  // everything held: packed weights + compensation

  // Layout details for the kernels (see gemm_s8_internal.h).
  const int8_t* data() const { return data_.get(); }
  const int32_t* comp() const { return comp_.get(); }  // null unless the ISA needs it
  int nr() const { return nr_; }                       // panel width (columns)
  int64_t k4() const { return k4_; }                   // K rounded up to groups of 4 bytes

 private:
  int64_t n_ = 0, k_ = 0, k4_ = 0;
  Isa isa_ = Isa::kScalar;
  int nr_ = 1;
  size_t data_bytes_ = 0;
  std::shared_ptr<int8_t[]> data_;   // 64-byte aligned; scalar: the plain [N, K] copy
  std::shared_ptr<int32_t[]> comp_;  // [panels · nr] or null
};

// C[m, n] = Σ_k A[m, k] · W[n, k] in int32, exact. A is row-major [M, K], C row-major [M, N].
void gemm_s8s8s32(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, int32_t* c);

// y[m, n] = float(acc[m, n]) * sx[per_token ? m : 0] * sw[per_channel ? n : 0] + (bias ? bias[n] :
// 0) in fp32, in exactly that order (no FMA), so every path gives the same bits.
struct Epilogue {
  const float* sx = nullptr;
  bool per_token = false;
  const float* sw = nullptr;
  bool per_channel = false;
  const float* bias = nullptr;
};
void gemm_s8_f32(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, const Epilogue& e,
                 float* y);

// Symmetric per-token quantization: per row, scale = max(absmax, 1e-5f) / 127.0f and
// q = clamp(nearbyint(x / scale), -127, 127) (a division, as NUMERICS §1 requires).
void quantize_s8_per_token(const float* x, int64_t m, int64_t k, int8_t* q, float* scales);
// q = clamp(nearbyint(x / scale), -127, 127) with a given scale (> 0).
void quantize_s8_with_scale(const float* x, int64_t n, float scale, int8_t* q);
// One row of quantize_s8_per_token on the calling thread (for kernels that fuse it).
void quantize_s8_row(const float* x, int64_t k, int8_t* q, float* scale);

// Scalar definitions: the oracle of the tests (W unpacked, row-major [N, K]).
namespace ref {
void gemm_s8s8s32(const int8_t* a, int64_t m, int64_t k, const int8_t* w, int64_t n, int32_t* c);
void gemm_s8_f32(const int8_t* a, int64_t m, int64_t k, const int8_t* w, int64_t n,
                 const Epilogue& e, float* y);
float dequant(int32_t acc, const Epilogue& e, int64_t row, int64_t col);
void quantize_s8_per_token(const float* x, int64_t m, int64_t k, int8_t* q, float* scales);
void quantize_s8_with_scale(const float* x, int64_t n, float scale, int8_t* q);
}  // namespace ref

}  // namespace sq::cpu
