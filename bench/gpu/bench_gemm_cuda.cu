// GPU INT8 GEMM: correctness against a CPU reference, then speed against cuBLAS(Lt) bf16 and
// cuBLASLt INT8 (its heuristic, 32 MiB workspace) in the same process, on Llama layer shapes.
// Standalone (CUDA toolkit only) so it builds on the device machine:
//   nvcc -std=c++17 -O3 -Isrc -gencode=arch=compute_90a,code=sm_90a \
//        bench/gpu/bench_gemm_cuda.cu src/backend/cuda/gemm_s8_sm90.cu -lcublasLt -o
//        bench_gemm_cuda
//   ./bench_gemm_cuda [--check-only] [--out results.json]
// Timing: CUDA events around batches of 10 launches, median of 20 batches after warm-up, operands
// rotated over enough copies to exceed the 50 MB L2. Ops counted as 2·M·N·K.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/gemm_s8_cuda.h"

namespace {

#define CUBLAS_CHECK(call)                                                          \
  do {                                                                              \
    const cublasStatus_t st_ = (call);                                              \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                             \
      std::fprintf(stderr, "%s failed: %d (line %d)\n", #call, int(st_), __LINE__); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

std::vector<int8_t> random_s8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-127, 127);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

std::vector<float> random_f32(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Random operands on the device (a hash of the index): never time on zeros or constants, which
// draw less power and run faster than real data.
__global__ void fill_s8(int8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = static_cast<int8_t>(static_cast<int>(h % 255u) - 127);
  }
}
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2bfloat16(static_cast<float>(h % 2001u) / 1000.0f - 1.0f);
  }
}

uint16_t bf16_bits(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  SQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, v.size()) * sizeof(T)));
  SQ_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

// Every int32 must be exact; the bf16 epilogue must equal the CPU's fp32 order then RNE.
bool check_shape(int64_t m, int64_t n, int64_t k, uint32_t seed) {
  const auto a = random_s8(m * k, seed), w = random_s8(n * k, seed + 1);
  const auto sx = random_f32(m, seed + 2, 1e-3f, 1e-1f), sw = random_f32(n, seed + 3, 1e-3f, 1e-1f);
  const auto bias = random_f32(n, seed + 4, -1.0f, 1.0f);
  int8_t *da = to_device(a), *dw = to_device(w);
  float *dsx = to_device(sx), *dsw = to_device(sw), *db = to_device(bias);
  int32_t* dc = nullptr;
  uint16_t* dy = nullptr;
  SQ_CUDA_CHECK(cudaMalloc(&dc, m * n * sizeof(int32_t)));
  SQ_CUDA_CHECK(cudaMalloc(&dy, m * n * sizeof(uint16_t)));
  SQ_CUDA_CHECK(cudaMemset(dc, 0x5A, m * n * sizeof(int32_t)));  // poison: every element is written
  SQ_CUDA_CHECK(cudaMemset(dy, 0x5A, m * n * sizeof(uint16_t)));
  sq::cuda::gemm_s8s8s32(da, dw, dc, m, n, k, nullptr);
  sq::cuda::GemmS8Epilogue ep{dsx, true, dsw, true, db};
  sq::cuda::gemm_s8_bf16(da, dw, ep, dy, m, n, k, nullptr);
  SQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int32_t> c(m * n);
  std::vector<uint16_t> y(m * n);
  SQ_CUDA_CHECK(cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost));
  SQ_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
  int64_t bad_c = 0, bad_y = 0;
  // Large shapes: every row of a sample of rows (first, last and strided), all columns.
  std::vector<int64_t> rows;
  const int64_t row_step = m > 64 ? m / 61 : 1;
  for (int64_t i = 0; i < m; i += row_step) rows.push_back(i);
  if (rows.back() != m - 1) rows.push_back(m - 1);
  for (int64_t i : rows) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t kk = 0; kk < k; ++kk) acc += int32_t(a[i * k + kk]) * int32_t(w[j * k + kk]);
      bad_c += c[i * n + j] != acc;
      volatile float f = static_cast<float>(acc) * sx[i];
      f = f * sw[j];
      f = f + bias[j];
      bad_y += y[i * n + j] != bf16_bits(f);
    }
  }
  std::printf("check M=%-5lld N=%-5lld K=%-5lld int32 mismatches %lld, bf16 mismatches %lld  %s\n",
              (long long)m, (long long)n, (long long)k, (long long)bad_c, (long long)bad_y,
              bad_c || bad_y ? "FAIL" : "ok");
  cudaFree(da), cudaFree(dw), cudaFree(dsx), cudaFree(dsw), cudaFree(db), cudaFree(dc),
      cudaFree(dy);
  return bad_c == 0 && bad_y == 0;
}

// Median over 20 batches of the mean time of 10 launches; fn(i) runs on operand set i.
template <typename F>
double time_ms(F fn, int sets) {
  for (int i = 0; i < 5; ++i) fn(i % sets);
  SQ_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> t;
  int it = 0;
  for (int b = 0; b < 20; ++b) {
    cudaEventRecord(e0);
    for (int r = 0; r < 10; ++r) fn(it++ % sets);
    cudaEventRecord(e1);
    SQ_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms / 10);
  }
  SQ_CUDA_CHECK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Lt {
  cublasLtHandle_t h;
  void* ws = nullptr;
  size_t ws_bytes = 32u << 20;
  Lt() {
    CUBLAS_CHECK(cublasLtCreate(&h));
    SQ_CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
  }
};

// Row-major C[M,N] = A[M,K]·W[N,K]ᵀ as column-major Cᵀ[N,M] = op_T(W)·A ("TN", the layout
// cuBLASLt's int8 kernels take). Returns a runner over operand sets.
struct LtGemm {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  bool ok = false;
  LtGemm(Lt& lt, int64_t m, int64_t n, int64_t k, bool int8) {
    const cublasComputeType_t ct = int8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F;
    const cudaDataType_t st = int8 ? CUDA_R_32I : CUDA_R_32F;
    const cudaDataType_t in = int8 ? CUDA_R_8I : CUDA_R_16BF, out = int8 ? CUDA_R_32I : CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, ct, st));
    const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, in, k, n, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, in, k, m, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, out, n, m, n));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt.ws_bytes, sizeof(lt.ws_bytes)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(lt.h, op, la, lb, lc, lc, pref, 1, &res, &found) ==
            CUBLAS_STATUS_SUCCESS &&
        found > 0) {
      algo = res.algo;
      ok = true;
    }
    cublasLtMatmulPreferenceDestroy(pref);
  }
  void run(Lt& lt, const void* a, const void* w, void* c) {
    const int32_t ia = 1, ib = 0;
    const float fa = 1.0f, fb = 0.0f;
    int32_t ct = 0;
    size_t sz = 0;
    cublasLtMatmulDescGetAttribute(op, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &ct, sizeof(ct), &sz);
    const bool int8 = ct == CUBLAS_COMPUTE_32I;
    CUBLAS_CHECK(cublasLtMatmul(lt.h, op, int8 ? (const void*)&ia : (const void*)&fa, w, la, a, lb,
                                int8 ? (const void*)&ib : (const void*)&fb, c, lc, c, lc, &algo,
                                lt.ws, lt.ws_bytes, nullptr));
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool check_only = false, skip_check = false;
  std::string out;
  std::vector<std::array<int64_t, 2>> kn = {
      {4096, 4096}, {4096, 11008}, {11008, 4096}, {8192, 28672}};
  std::vector<int64_t> ms = {1, 4, 8, 16, 64, 256, 1024, 2048, 4096, 16384};
  for (int i = 1; i < argc; ++i) {
    long long m = 0, k = 0, n = 0;
    if (!std::strcmp(argv[i], "--check-only")) {
      check_only = true;
    } else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc &&
               std::sscanf(argv[++i], "%lld,%lld,%lld", &m, &k, &n) == 3) {
      // One shape, no correctness pass: for profilers (ncu) and quick experiments.
      kn = {{k, n}};
      ms = {m};
      skip_check = true;
    } else {
      std::fprintf(stderr, "usage: %s [--check-only] [--out F.json] [--shape M,K,N]\n", argv[0]);
      return 2;
    }
  }
  cudaDeviceProp prop{};
  SQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, sm_%d%d, %d SMs, L2 %d MiB\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize >> 20);
  bool ok = true;
  const int64_t shapes[][3] = {
      {1, 128, 128},     {77, 136, 1040},    {128, 128, 128},    {200, 300, 4096},  {1, 4096, 4096},
      {16, 11008, 4096}, {333, 4096, 11008}, {2048, 4096, 4096}, {4500, 9000, 208}, {3, 5, 16},
      {9, 1000, 4112},   {16, 77, 64},       {7, 16400, 1024}};
  uint32_t seed = 1;
  if (!skip_check)
    for (const auto& s : shapes) ok &= check_shape(s[0], s[1], s[2], seed += 10);
  if (!ok) {
    std::printf("CORRECTNESS FAILED\n");
    return 1;
  }
  if (check_only) return 0;

  Lt lt;
  // The decode kernels' ceiling: a device-to-device copy of 2 GiB (bytes read + written).
  double copy_tbs = 0;
  {
    const size_t bytes = size_t(1) << 31;
    void *src, *dst;
    SQ_CUDA_CHECK(cudaMalloc(&src, bytes));
    SQ_CUDA_CHECK(cudaMalloc(&dst, bytes));
    SQ_CUDA_CHECK(cudaMemset(src, 1, bytes));
    const double ms_copy = time_ms(
        [&](int) { SQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); }, 1);
    copy_tbs = 2.0 * bytes / (ms_copy * 1e-3) / 1e12;
    cudaFree(src), cudaFree(dst);
    std::printf("device-to-device copy: %.2f TB/s (read + write)\n", copy_tbs);
  }
  std::string json = "{\"device\": \"" + std::string(prop.name) +
                     "\", \"copy_tbs\": " + std::to_string(copy_tbs) + ", \"rows\": [\n";
  std::printf("\n%-6s %-12s %10s %10s %10s %9s %9s\n", "M", "K×N", "bf16 TF/s", "LtI8 TOPS",
              "ours TOPS", "ours/bf16", "ours/LtI8");
  for (const auto& s : kn) {
    const int64_t k = s[0], n = s[1];
    for (int64_t m : ms) {
      // Enough operand sets that the weights of one pass are not L2-resident.
      const size_t w8 = n * k, a8 = m * k;
      const int sets = std::max<int>(2, static_cast<int>((200u << 20) / (w8 + a8) + 1));
      const int nsets = std::min(sets, 8);
      std::vector<int8_t*> A(nsets), W(nsets);
      std::vector<__nv_bfloat16*> Ab(nsets), Wb(nsets);
      for (int i = 0; i < nsets; ++i) {
        SQ_CUDA_CHECK(cudaMalloc(&A[i], a8));
        SQ_CUDA_CHECK(cudaMalloc(&W[i], w8));
        SQ_CUDA_CHECK(cudaMalloc(&Ab[i], a8 * 2));
        SQ_CUDA_CHECK(cudaMalloc(&Wb[i], w8 * 2));
        fill_s8<<<1024, 256>>>(A[i], a8, 11 + i);
        fill_s8<<<1024, 256>>>(W[i], w8, 23 + i);
        fill_bf16<<<1024, 256>>>(Ab[i], a8, 37 + i);
        fill_bf16<<<1024, 256>>>(Wb[i], w8, 41 + i);
        SQ_CUDA_CHECK(cudaGetLastError());
      }
      void *C32, *Cb;
      SQ_CUDA_CHECK(cudaMalloc(&C32, m * n * 4));
      SQ_CUDA_CHECK(cudaMalloc(&Cb, m * n * 2));
      float *sx, *sw;
      SQ_CUDA_CHECK(cudaMalloc(&sx, m * 4));
      SQ_CUDA_CHECK(cudaMalloc(&sw, n * 4));
      SQ_CUDA_CHECK(cudaMemset(sx, 0x3c, m * 4));
      SQ_CUDA_CHECK(cudaMemset(sw, 0x3c, n * 4));
      const sq::cuda::GemmS8Epilogue ep{sx, true, sw, true, nullptr};
      LtGemm bf(lt, m, n, k, false), i8(lt, m, n, k, true);
      const double t_bf =
          bf.ok ? time_ms([&](int i) { bf.run(lt, Ab[i], Wb[i], Cb); }, nsets) : NAN;
      const double t_i8 = i8.ok ? time_ms([&](int i) { i8.run(lt, A[i], W[i], C32); }, nsets) : NAN;
      const double t_us = time_ms(
          [&](int i) {
            sq::cuda::gemm_s8_bf16(A[i], W[i], ep, static_cast<uint16_t*>(Cb), m, n, k, nullptr);
          },
          nsets);
      const double ops = 2.0 * m * n * k;
      auto rate = [&](double ms) { return ops / (ms * 1e-3) / 1e12; };
      const double w_bytes_per_s = static_cast<double>(w8) / (t_us * 1e-3);
      std::printf(
          "%-6lld %5lldx%-6lld %10.1f %10.1f %10.1f %8.2fx %8.2fx  (%.2f TB/s int8 weights)\n",
          (long long)m, (long long)k, (long long)n, rate(t_bf), rate(t_i8), rate(t_us), t_bf / t_us,
          t_i8 / t_us, w_bytes_per_s / 1e12);
      char line[512];
      std::snprintf(
          line, sizeof line,
          "  {\"m\": %lld, \"k\": %lld, \"n\": %lld, \"bf16_ms\": %.6f, \"cublaslt_i8_ms\": "
          "%.6f, \"ours_ms\": %.6f, \"bf16_tflops\": %.1f, \"cublaslt_i8_tops\": %.1f, "
          "\"ours_tops\": %.1f, \"ours_vs_bf16\": %.3f, \"ours_vs_cublaslt_i8\": %.3f},\n",
          (long long)m, (long long)k, (long long)n, t_bf, t_i8, t_us, rate(t_bf), rate(t_i8),
          rate(t_us), t_bf / t_us, t_i8 / t_us);
      json += line;
      for (int i = 0; i < nsets; ++i)
        cudaFree(A[i]), cudaFree(W[i]), cudaFree(Ab[i]), cudaFree(Wb[i]);
      cudaFree(C32), cudaFree(Cb), cudaFree(sx), cudaFree(sw);
    }
  }
  if (json.size() > 2) json.erase(json.size() - 2, 1);
  json += "]}\n";
  if (!out.empty()) {
    FILE* f = std::fopen(out.c_str(), "w");
    if (f) std::fputs(json.c_str(), f), std::fclose(f);
  }
  return 0;
}
