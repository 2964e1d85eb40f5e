// Floating-point Linears of the CUDA engine through cuBLASLt: y[m, n] (fp32) = x[m, k] · W[n, k]ᵀ
// with x and W both bf16 or both fp32 (fp32 compute, no TF32: the fp32 engine is the reference).
// One handle and a 32 MiB workspace per engine; a plan (layouts + heuristic algorithm) is cached
// per shape and type, so that decode steps captured in a CUDA graph make no heuristic calls.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace sq::cuda {

class LtGemm {
 public:
  LtGemm();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, int64_t m, int64_t n,
           int64_t k, cudaStream_t s) {
    run_any(x, w, y, m, n, k, CUDA_R_16BF, s);
  }
  void run(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k,
           cudaStream_t s) {
    run_any(x, w, y, m, n, k, CUDA_R_32F, s);
  }

 private:
  static constexpr size_t kWorkspace = 32u << 20;
  struct Plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
  };
  void run_any(const void* x, const void* w, float* y, int64_t m, int64_t n, int64_t k,
               cudaDataType_t type, cudaStream_t s);
  const Plan& plan(int64_t m, int64_t n, int64_t k, cudaDataType_t type);

  cublasLtHandle_t h_{};
  char* ws_ = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, Plan> plans_;
};

}  // namespace sq::cuda
