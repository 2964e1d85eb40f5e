// Architecture descriptors: everything that differs between llama, mistral, qwen2 and opt, as data.
// The forward pass, the loader and (later) calibration, smoothing and export read these tables;
// there is no per-architecture fork of the code. Adding a Llama-like architecture means adding a
// descriptor, not a forward pass.
#pragma once

#include <string>
#include <vector>

#include "io/hf_config.h"

namespace sq {

// The Linears of a decoder layer. Non-gated MLPs (OPT) use kUp for fc1 and kDown for fc2.
enum class LinearRole { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLinearRoles = 7;
std::string_view role_name(LinearRole r);

enum class NormRole { kAttn, kMlp };

struct LinearSpec {
  LinearRole role;
  std::string name;  // relative to the layer prefix, e.g. "self_attn.q_proj"
};

// A norm and the Linears that read its output: the unit SmoothQuant rescales (NUMERICS.md §4).
// The first Linear's input statistics stand for the group.
struct SmoothGroup {
  NormRole norm;
  std::vector<LinearRole> linears;
};

struct ArchDescriptor {
  std::string layer_prefix;     // "model.layers." ; the layer index and "." follow
  std::string embed_tokens;     // full tensor name without ".weight"
  std::string embed_positions;  // learned positions (OPT), empty otherwise
  std::string final_norm;
  std::string lm_head;
  std::string attn_norm, mlp_norm;  // relative to the layer prefix
  std::vector<LinearSpec> linears;  // in forward order
  std::vector<SmoothGroup> smooth_groups;
};

const ArchDescriptor& descriptor_for(Arch arch);

// "model.layers.3.self_attn.q_proj": the Hugging Face module name of a Linear.
std::string linear_module_name(const ArchDescriptor& d, int layer, LinearRole role);

}  // namespace sq
