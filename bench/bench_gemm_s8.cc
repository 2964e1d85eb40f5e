// INT8 GEMM (gemm_s8_f32, fused per-token × per-channel dequantization) against OpenBLAS fp32 in
// the same process: cblas_sgemm, or cblas_sgemv at M = 1, on Llama-7B Linear shapes (N × K).
// Counters: GOPS = 2·M·N·K per second; at M = 1 also GB/s of weight bytes (int8: N·K, fp32: 4·N·K).
// Uses every sq thread (OpenBLAS follows sq::set_num_threads). Compare ratios within one run.
// OpenBLAS 0.3.21 does not know very recent Xeons and falls back to its slow "Prescott" kernels;
// the context line openblas_core says which it used (set OPENBLAS_CORETYPE=SkylakeX for a fair
// AVX-512 baseline on such CPUs).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <random>
#include <string>
#include <vector>

#include "backend/cpu/gemm_s8.h"
#include "core/parallel.h"

namespace {

using sq::cpu::Isa;

struct Shape {
  int64_t n, k;
};
constexpr Shape kShapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
constexpr int64_t kMs[] = {1, 16, 128, 512, 2048};

std::vector<float> rand_f32(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<int8_t> rand_s8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-127, 127);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

void set_counters(benchmark::State& st, int64_t m, int64_t n, int64_t k, double weight_bytes) {
  const double ops = 2.0 * static_cast<double>(m) * n * k;
  st.counters["GOPS"] =
      benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (m == 1) {
    st.counters["GB/s"] =
        benchmark::Counter(weight_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
}

void bm_sgemm(benchmark::State& st, int64_t m, Shape s) {
  const auto x = rand_f32(m * s.k, 1), w = rand_f32(s.n * s.k, 2);
  std::vector<float> y(m * s.n);
  const int n = static_cast<int>(s.n), k = static_cast<int>(s.k), mi = static_cast<int>(m);
  for (auto _ : st) {
    if (m == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w.data(), k, x.data(), 1, 0.0f, y.data(),
                  1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, n, k, 1.0f, x.data(), k, w.data(), k,
                  0.0f, y.data(), n);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, m, s.n, s.k, 4.0 * s.n * s.k);
}

void bm_s8(benchmark::State& st, int64_t m, Shape s, Isa isa) {
  const auto a = rand_s8(m * s.k, 3), w = rand_s8(s.n * s.k, 4);
  const auto sx = rand_f32(m, 5), sw = rand_f32(s.n, 6);
  const auto packed = sq::cpu::PackedS8::pack(w.data(), s.n, s.k, isa);
  const sq::cpu::Epilogue e{sx.data(), true, sw.data(), true, nullptr};
  std::vector<float> y(m * s.n);
  for (auto _ : st) {
    sq::cpu::gemm_s8_f32(a.data(), m, s.k, packed, e, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, m, s.n, s.k, static_cast<double>(s.n) * s.k);
}

void configure(benchmark::internal::Benchmark* b, int64_t m) {
  b->Unit(benchmark::kMillisecond)->UseRealTime();
  if (m >= 2048) {
    b->MinTime(0.3);
  } else {
    b->MinTime(0.2);
  }
}

void register_all() {
  const Isa best = sq::cpu::best_isa();
  for (const Shape& s : kShapes) {
    for (int64_t m : kMs) {
      const std::string tag =
          "/M" + std::to_string(m) + "_N" + std::to_string(s.n) + "_K" + std::to_string(s.k);
      configure(benchmark::RegisterBenchmark(((m == 1 ? "sgemv" : "sgemm") + tag).c_str(), bm_sgemm,
                                             m, s),
                m);
      configure(benchmark::RegisterBenchmark(("s8_best" + tag).c_str(), bm_s8, m, s, best), m);
      for (Isa isa : {Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512Vnni}) {
        if (isa == best || !sq::cpu::isa_supported(isa)) continue;
        configure(
            benchmark::RegisterBenchmark(
                ("s8_" + std::string(sq::cpu::isa_name(isa)) + tag).c_str(), bm_s8, m, s, isa),
            m);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  sq::set_num_threads(sq::num_threads());  // also pins OpenBLAS to the same thread count
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::AddCustomContext("isa", std::string(sq::cpu::isa_name(sq::cpu::best_isa())));
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::AddCustomContext("threads", std::to_string(sq::num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
