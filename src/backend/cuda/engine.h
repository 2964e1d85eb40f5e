// The CUDA implementation of DeviceEngine (backend/device_engine.h). Built only with CUDA; the
// registry is its one caller.
#pragma once

#include <memory>

#include "backend/device_engine.h"

namespace sq::cuda {

std::unique_ptr<DeviceEngine> make_engine(const DeviceModelSpec& spec);

}  // namespace sq::cuda
