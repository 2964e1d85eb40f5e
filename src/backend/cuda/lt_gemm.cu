// lt_gemm.cuh.
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/lt_gemm.cuh"

namespace sq::cuda {
namespace {

#define SQ_CUBLAS_CHECK(call)                                                \
  do {                                                                       \
    const cublasStatus_t st_ = (call);                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                        \
      throw std::runtime_error(std::string(#call) + " failed with status " + \
                               std::to_string(static_cast<int>(st_)));       \
  } while (0)

}  // namespace

LtGemm::LtGemm() {
  SQ_CUBLAS_CHECK(cublasLtCreate(&h_));
  SQ_CUDA_CHECK(cudaMalloc(&ws_, kWorkspace));
}

LtGemm::~LtGemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatmulDescDestroy(p.op);
    cublasLtMatrixLayoutDestroy(p.la);
    cublasLtMatrixLayoutDestroy(p.lb);
    cublasLtMatrixLayoutDestroy(p.lc);
  }
  cudaFree(ws_);
  cublasLtDestroy(h_);
}

void LtGemm::run_any(const void* x, const void* w, float* y, int64_t m, int64_t n, int64_t k,
                     cudaDataType_t type, cudaStream_t s) {
  const Plan& p = plan(m, n, k, type);
  const float one = 1.0f, zero = 0.0f;
  SQ_CUBLAS_CHECK(cublasLtMatmul(h_, p.op, &one, w, p.la, x, p.lb, &zero, y, p.lc, y, p.lc, &p.algo,
                                 ws_, kWorkspace, s));
}

const LtGemm::Plan& LtGemm::plan(int64_t m, int64_t n, int64_t k, cudaDataType_t type) {
  const auto key = std::make_tuple(m, n, k, static_cast<int>(type));
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan p{};
  SQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
  SQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
  SQ_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn));
  // Column-major view: Cᵀ[n, m] = op_T(W as [k, n]) · x as [k, m].
  SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, type, k, n, k));
  SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lb, type, k, m, k));
  SQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lc, CUDA_R_32F, n, m, n));
  cublasLtMatmulPreference_t pref;
  SQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = kWorkspace;
  SQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(h_, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    throw std::runtime_error("cuBLASLt has no GEMM for this shape and type");
  p.algo = res.algo;
  return plans_.emplace(key, p).first->second;
}

}  // namespace sq::cuda
