#include "backend/registry.h"

#include "backend/device_engine.h"
#include "core/error.h"

#ifdef SQ_WITH_CUDA
#include "backend/cuda/device_query.h"
#include "backend/cuda/engine.h"
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

std::unique_ptr<DeviceEngine> make_cuda_engine(const DeviceModelSpec& spec) {
#ifdef SQ_WITH_CUDA
  SQ_CHECK(!cuda::query_devices().empty(),
           "--device cuda: no CUDA GPU is visible (driver missing or no device); run on the CPU");
  return cuda::make_engine(spec);
#else
  (void)spec;
  fail("--device cuda: this build has no CUDA backend; rebuild with nvcc installed (-DSQ_CUDA=ON)");
#endif
}

}  // namespace sq
