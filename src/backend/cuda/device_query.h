// CUDA device discovery. Safe without a driver or GPU: returns an empty list instead of failing,
// so the same binary runs on CPU-only machines (CI) and on the H200.
#pragma once

#include <string>
#include <vector>

namespace sq::cuda {

struct Device {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t total_mem = 0;
  int sm_count = 0;
  std::string summary() const;
};

std::vector<Device> query_devices();

}  // namespace sq::cuda
