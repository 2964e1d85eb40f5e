#include "backend/registry.h"

#ifdef SQ_WITH_CUDA
#include "backend/cuda/device_query.h"
#endif

namespace sq {

bool cuda_compiled() {
#ifdef SQ_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<DeviceInfo> cuda_devices() {
  std::vector<DeviceInfo> out;
#ifdef SQ_WITH_CUDA
  for (const auto& d : cuda::query_devices()) out.push_back({d.name, d.summary()});
#endif
  return out;
}

}  // namespace sq
