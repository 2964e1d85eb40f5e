// Starts a loaded model on a GPU (backend/device_engine.h): describes its weights to the engine.
// FP models run with fp32 Linears (the reference: calibration, FP baselines of evaluations) or
// bf16 ones; INT8 models run exactly what an Int8Executor runs on the CPU — the same int8 weights
// and scales, activation granularity, static scales and --quant-bmm. Supports pre-norm RMSNorm
// decoders with RoPE and a gated SiLU MLP. Also: calibration statistics measured on the GPU.
#pragma once

#include <memory>

#include "backend/device_engine.h"
#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/calibrate.h"
#include "quant/int8_linear.h"

namespace sq {

// fp32 or bf16 Linears of an FP model.
std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, DevicePrecision precision);
// Real INT8 Linears as `exec` runs them for `model` (a quantized model or an INT8 checkpoint).
// f32_lm_head: keep the lm_head in fp32 as the CPU engines do (evaluations against an fp32
// reference), instead of bf16 (speed).
std::unique_ptr<DeviceEngine> make_device_engine(const Model& model, const Int8Executor& exec,
                                                 bool f32_lm_head = false);

// Throws the user-facing error when `cfg` cannot run on the GPU engine (call before long work).
void check_device_supported(const ModelConfig& cfg);

// The engine's activation quantization for a scheme's granularity.
DeviceActQuant device_act(ActGranularity a);

// A spec for speed runs: the model's shapes with random weights made on the device.
DeviceModelSpec random_device_spec(const ModelConfig& cfg, DevicePrecision precision);

// calibrate() (quant/calibrate.h) on the GPU: the documents run through an fp32 engine and the
// same statistics come back per HF module name. Agrees with the CPU within fp32 summation order.
ActStats calibrate_on_device(const Model& model, const CalibSet& set);

}  // namespace sq
