// Starts a loaded model on a GPU (backend/device_engine.h): describes its weights to the engine,
// quantizing each Linear per output channel on the host for INT8 engines (the same quantizer as
// the CPU INT8 path, so both run identical int8 weights), or passing the int8 weights of an INT8
// checkpoint as they are. Supports pre-norm RMSNorm decoders with RoPE and a gated SiLU MLP.
#pragma once

#include <memory>

#include "backend/device_engine.h"
#include "model/model.h"

namespace sq {

std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, bool int8);

// A spec for speed runs: the model's shapes with random weights made on the device.
DeviceModelSpec random_device_spec(const ModelConfig& cfg, bool int8);

}  // namespace sq
