// Launch helpers shared by the CUDA kernels: pointer alignment for the vector paths, dispatch of a
// runtime head dim onto the compile-time instantiations that exist, the device's shared-memory
// limit, and a launch that raises a kernel's dynamic shared memory limit once (the attribute is per
// kernel, so it is keyed on the kernel itself).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_check.h"

namespace sq::cuda {

// Whether p is a multiple of `bytes` (vector loads and stores, TMA rows).
inline bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// f(std::integral_constant<int, D>{}) for the D in kDims equal to head_dim; false if none is.
template <int... kDims, typename F>
bool dispatch_head_dim(int64_t head_dim, F&& f) {
  return ((head_dim == kDims ? (f(std::integral_constant<int, kDims>{}), true) : false) || ...);
}

// The most dynamic shared memory a block may opt into on the current device (queried once: the
// engine runs on one device). Kernels whose need exceeds it must not be launched.
inline int max_dynamic_smem() {
  static const int bytes = current_device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  return bytes;
}

// kKernel<<<grid, block, bytes, s>>>(args...), after allowing it `bytes` of dynamic shared
// memory (once per kernel: `bytes` must be the same on every call for a given kernel).
template <auto kKernel, typename... Args>
void launch_with_smem(dim3 grid, dim3 block, int bytes, cudaStream_t s, Args&&... args) {
  static const bool attr_set = [bytes] {
    SQ_CUDA_CHECK(
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)attr_set;
  kKernel<<<grid, block, bytes, s>>>(static_cast<Args&&>(args)...);
  SQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sq::cuda
