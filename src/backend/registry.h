// Backend registry: which devices this build and this machine offer. The only translation unit
// that knows whether the CUDA backend was compiled in (DESIGN.md §2: #ifdef lives here and in
// CMake).
#pragma once

#include <string>
#include <vector>

namespace sq {

struct DeviceInfo {
  std::string name;     // "cpu" or the GPU's name
  std::string summary;  // one line for logs / --version
};

// True when the CUDA backend was compiled into this binary (not whether a GPU is present).
bool cuda_compiled();
// The GPUs visible now; empty without a driver or device.
std::vector<DeviceInfo> cuda_devices();

}  // namespace sq
