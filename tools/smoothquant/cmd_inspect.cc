// smoothquant inspect MODEL [--json]: architecture, sizes, tensors and tokenizer of a checkpoint.
#include <fmt/format.h>

#include <map>

#include "cli_common.h"
#include "core/error.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/arch.h"
#include "tokenizer/tokenizer.h"

namespace sq::cli {
namespace {

struct InspectArgs {
  std::string model;
  bool json = false;
};

void run_inspect(const InspectArgs& a) {
  const ModelConfig cfg = load_model_config(a.model);
  const Checkpoint ckpt = Checkpoint::open_dir(a.model);
  std::map<std::string, int64_t> params_by_dtype, bytes_by_dtype;
  int64_t params = 0, bytes = 0;
  for (const auto& [name, t] : ckpt.tensors()) {
    params += t->numel();
    bytes += static_cast<int64_t>(t->nbytes);
    params_by_dtype[std::string(dtype_name(t->dtype))] += t->numel();
  }
  std::string tok_summary = "none";
  Json tok = nullptr;
  try {
    auto tk = load_tokenizer(a.model);
    tok = {{"vocab_size", tk->vocab_size()},
           {"bos_id", tk->bos_id() ? Json(*tk->bos_id()) : Json(nullptr)},
           {"eos_id", tk->eos_id() ? Json(*tk->eos_id()) : Json(nullptr)}};
    tok_summary = fmt::format("{} ids, bos {}, eos {}", tk->vocab_size(),
                              tk->bos_id() ? std::to_string(*tk->bos_id()) : "-",
                              tk->eos_id() ? std::to_string(*tk->eos_id()) : "-");
  } catch (const Error& e) {
    tok_summary = std::string("unavailable: ") + e.what();
  }
  const ArchDescriptor& d = descriptor_for(cfg.arch);
  std::vector<std::string> groups;
  for (const auto& g : d.smooth_groups) {
    std::vector<std::string> roles;
    for (auto r : g.linears) roles.emplace_back(role_name(r));
    groups.push_back(fmt::format("{} -> {{{}}}",
                                 g.norm == NormRole::kAttn ? d.attn_norm : d.mlp_norm,
                                 fmt::join(roles, ", ")));
  }
  if (a.json) {
    Json t = Json::object();
    for (const auto& [name, v] : ckpt.tensors()) {
      t[name] = {{"dtype", std::string(dtype_name(v->dtype))}, {"shape", v->shape}};
    }
    print_json({{"model", a.model},
                {"arch", std::string(arch_name(cfg.arch))},
                {"vocab_size", cfg.vocab_size},
                {"hidden_size", cfg.hidden_size},
                {"intermediate_size", cfg.intermediate_size},
                {"num_layers", cfg.n_layers},
                {"num_heads", cfg.n_heads},
                {"num_kv_heads", cfg.n_kv_heads},
                {"head_dim", cfg.head_dim},
                {"max_positions", cfg.max_positions},
                {"tie_embeddings", cfg.tie_embeddings},
                {"params", params},
                {"bytes", bytes},
                {"params_by_dtype", params_by_dtype},
                {"n_tensors", ckpt.tensors().size()},
                {"n_files", ckpt.files().size()},
                {"smooth_groups", groups},
                {"tokenizer", tok},
                {"tensors", t}});
    return;
  }
  fmt::print("model          {}\n", a.model);
  fmt::print("architecture   {} ({} layers, hidden {}, ffn {}, heads {}/{} kv, head_dim {})\n",
             arch_name(cfg.arch), cfg.n_layers, cfg.hidden_size, cfg.intermediate_size, cfg.n_heads,
             cfg.n_kv_heads, cfg.head_dim);
  fmt::print("vocab          {}{}\n", cfg.vocab_size,
             cfg.tie_embeddings ? " (tied embeddings)" : "");
  fmt::print("positions      {} ({})\n", cfg.max_positions,
             cfg.positions == PositionKind::kRope ? fmt::format("RoPE theta {}", cfg.rope_theta)
                                                  : std::string("learned, offset 2"));
  fmt::print("norm           {} eps {}\n",
             cfg.norm == NormKind::kRmsNorm
                 ? "RMSNorm"
                 : (cfg.pre_norm ? "LayerNorm (pre)" : "LayerNorm (post)"),
             cfg.norm_eps);
  std::vector<std::string> by;
  for (const auto& [k, v] : params_by_dtype) by.push_back(fmt::format("{} {}", v, k));
  fmt::print("parameters     {} ({:.2f} M) in {} tensors, {} file(s), {:.1f} MiB [{}]\n", params,
             params / 1e6, ckpt.tensors().size(), ckpt.files().size(), bytes / 1048576.0,
             fmt::join(by, ", "));
  fmt::print("smooth groups  {}\n", fmt::join(groups, "; "));
  fmt::print("tokenizer      {}\n", tok_summary);
}

}  // namespace

Runner register_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  auto* c = app.add_subcommand("inspect",
                               "Show the architecture, sizes, tensors and tokenizer of a model");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_flag("--json", a->json, "One JSON object on stdout (includes every tensor)");
  return [a] { run_inspect(*a); };
}

}  // namespace sq::cli
