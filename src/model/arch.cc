#include "model/arch.h"

#include <fmt/format.h>

#include "core/error.h"

namespace sq {
namespace {

ArchDescriptor llama_like() {
  ArchDescriptor d;
  d.layer_prefix = "model.layers.";
  d.embed_tokens = "model.embed_tokens";
  d.final_norm = "model.norm";
  d.lm_head = "lm_head";
  d.attn_norm = "input_layernorm";
  d.mlp_norm = "post_attention_layernorm";
  d.linears = {{LinearRole::kQ, "self_attn.q_proj"}, {LinearRole::kK, "self_attn.k_proj"},
               {LinearRole::kV, "self_attn.v_proj"}, {LinearRole::kO, "self_attn.o_proj"},
               {LinearRole::kGate, "mlp.gate_proj"}, {LinearRole::kUp, "mlp.up_proj"},
               {LinearRole::kDown, "mlp.down_proj"}};
  d.smooth_groups = {{NormRole::kAttn, {LinearRole::kQ, LinearRole::kK, LinearRole::kV}},
                     {NormRole::kMlp, {LinearRole::kGate, LinearRole::kUp}}};
  return d;
}

ArchDescriptor opt() {
  ArchDescriptor d;
  d.layer_prefix = "model.decoder.layers.";
  d.embed_tokens = "model.decoder.embed_tokens";
  d.embed_positions = "model.decoder.embed_positions";
  d.final_norm = "model.decoder.final_layer_norm";
  d.lm_head = "lm_head";
  d.attn_norm = "self_attn_layer_norm";
  d.mlp_norm = "final_layer_norm";
  d.linears = {{LinearRole::kQ, "self_attn.q_proj"},
               {LinearRole::kK, "self_attn.k_proj"},
               {LinearRole::kV, "self_attn.v_proj"},
               {LinearRole::kO, "self_attn.out_proj"},
               {LinearRole::kUp, "fc1"},
               {LinearRole::kDown, "fc2"}};
  d.smooth_groups = {{NormRole::kAttn, {LinearRole::kQ, LinearRole::kK, LinearRole::kV}},
                     {NormRole::kMlp, {LinearRole::kUp}}};
  return d;
}

}  // namespace

std::string_view role_name(LinearRole r) {
  switch (r) {
    case LinearRole::kQ:
      return "q";
    case LinearRole::kK:
      return "k";
    case LinearRole::kV:
      return "v";
    case LinearRole::kO:
      return "o";
    case LinearRole::kGate:
      return "gate";
    case LinearRole::kUp:
      return "up";
    case LinearRole::kDown:
      return "down";
  }
  return "?";
}

const ArchDescriptor& descriptor_for(Arch arch) {
  static const ArchDescriptor kLlama = llama_like();
  static const ArchDescriptor kOpt = opt();
  switch (arch) {
    case Arch::kLlama:
    case Arch::kMistral:
    case Arch::kQwen2:
      return kLlama;  // same module names; biases and norms differ only through ModelConfig
    case Arch::kOpt:
      return kOpt;
  }
  fail("internal error: no descriptor for architecture");
}

std::string linear_module_name(const ArchDescriptor& d, int layer, LinearRole role) {
  for (const auto& s : d.linears) {
    if (s.role == role) return fmt::format("{}{}.{}", d.layer_prefix, layer, s.name);
  }
  fail("internal error: architecture has no {} projection", role_name(role));
}

}  // namespace sq
