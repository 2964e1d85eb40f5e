// Error checking for CUDA runtime calls in the CUDA backend: a failing call throws sq::Error-like
// std::runtime_error naming the call and CUDA's message (the backend is kept free of the core
// library's headers so its kernels also build standalone for the device benchmarks).
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
