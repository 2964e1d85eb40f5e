// Programmatic dependent launch (Hopper): the per-layer kernels of the decode path are launched so
// that they may start while the kernel before them is still running. A decode GEMV's weights do
// not depend on that kernel, so its blocks load their first weight chunk, then wait in pdl_wait()
// until the previous grid has completed and its writes are visible, and only then read the
// activations; the other kernels wait first thing, which still hides their launch latency. Each
// calls pdl_trigger() early so that its successor may launch. Both are no-ops before sm_90;
// launch_pdl falls back to a plain launch there.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

#include "backend/cuda/cuda_check.h"

namespace sq::cuda {

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Internal linkage throughout: the probe kernel below is each translation unit's own.
namespace {

__global__ void arch_probe_k() {}

// The virtual architecture (×10) of the code the current GPU runs for this build, i.e. the
// __CUDA_ARCH__ it was compiled for: that of the SASS it loads, or of the PTX it JIT-compiles. A
// GPU newer than every target (e.g. sm_100 for a build of sm_80, sm_89 and sm_90a, whose
// arch-specific sm_90a code it cannot run) executes compute_89 code, where the griddepcontrol and
// cluster instructions are compiled out: that decides, not the device's own capability (nor
// binaryVersion, which is the device's architecture for JIT-compiled code).
int code_arch() {
  static const int arch = [] {
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, arch_probe_k) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return a.ptxVersion;
  }();
  return arch;
}

// Code for sm_90 or newer runs, unless SQ_CUDA_PDL=0.
bool pdl_supported() {
  static const bool ok = [] {
    const char* env = std::getenv("SQ_CUDA_PDL");
    if (env && env[0] == '0') return false;
    return code_arch() >= 90;
  }();
  return ok;
}

// kernel<<<grid, block, smem, stream>>>(args...), allowed to overlap the previous kernel's tail.
// The kernel must call pdl_wait() before it touches anything the previous kernel reads or writes,
// and on every path before it returns: a kernel that can complete without waiting would let its
// own successor run ahead of the kernel before it.
template <typename... Params, typename... Args>
void launch_pdl_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                     cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_supported() ? 1 : 0;
  SQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                Args&&... args) {
  launch_pdl_smem(kernel, grid, block, 0, stream, std::forward<Args>(args)...);
}

}  // namespace
}  // namespace sq::cuda
