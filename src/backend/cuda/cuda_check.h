// Error checking for CUDA runtime calls in the CUDA backend: a failing call throws sq::Error-like
// std::runtime_error naming the call and CUDA's message (the backend is kept free of the core
// library's headers so its kernels also build standalone for the device benchmarks), and a
// device-attribute query built on it.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define SQ_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t sq_err_ = (call);                                                  \
    if (sq_err_ != cudaSuccess)                                                          \
      throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(sq_err_)); \
  } while (0)

namespace sq::cuda {

// One attribute of the current device (callers cache what they query on hot paths).
inline int current_device_attribute(cudaDeviceAttr attr) {
  int dev = 0, v = 0;
  SQ_CUDA_CHECK(cudaGetDevice(&dev));
  SQ_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

}  // namespace sq::cuda
