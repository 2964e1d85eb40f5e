// Run-time ISA detection and the SQ_CPU_ISA override for the INT8 kernels (gemm_s8.h).
// __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
#include <cstdlib>
#include <string>

#include "backend/cpu/gemm_s8.h"
#include "core/error.h"

namespace sq::cpu {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvxVnni:
      return "avx-vnni";
    case Isa::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "unknown";
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2");
    case Isa::kAvxVnni:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case Isa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

namespace {

Isa detect() {
  if (const char* env = std::getenv("SQ_CPU_ISA"); env != nullptr && *env != '\0') {
    const std::string_view want(env);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512Vnni}) {
      if (isa_name(isa) != want) continue;
      SQ_CHECK(isa_supported(isa),
               "SQ_CPU_ISA={}: this CPU does not support it; unset it or use "
               "one of scalar, avx2, avx-vnni, avx512-vnni that it supports",
               want);
      return isa;
    }
    fail("SQ_CPU_ISA={}: unknown ISA; use scalar, avx2, avx-vnni or avx512-vnni", want);
  }
  for (Isa isa : {Isa::kAvx512Vnni, Isa::kAvxVnni, Isa::kAvx2}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::kScalar;
}

}  // namespace

Isa best_isa() {
  static const Isa isa = detect();
  return isa;
}

}  // namespace sq::cpu
