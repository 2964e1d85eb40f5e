#include <cuda_runtime.h>
#include <fmt/format.h>

#include "backend/cuda/device_query.h"

namespace sq::cuda {

std::string Device::summary() const {
  return fmt::format("cuda:{} {} (sm_{}{}, {} SMs, {:.1f} GiB)", index, name, cc_major, cc_minor,
                     sm_count, total_mem / double(1ull << 30));
}

std::vector<Device> query_devices() {
  std::vector<Device> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return out;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount});
  }
  return out;
}

}  // namespace sq::cuda
