// smoothquant make-demo-model -o DIR [sizes...]: the embedded default model (see demo_model.h).
#include <fmt/format.h>

#include "cli_common.h"
#include "core/error.h"
#include "model/demo_model.h"

namespace sq::cli {
namespace {

struct MakeDemoArgs {
  std::string out, dtype = "f32", preset;
  DemoModelOptions opt;
};

void run_make_demo(MakeDemoArgs a) {
  if (a.preset == "1b") {
    // A Llama-3.2-1B-like shape (32k vocab): 16 layers, hidden 2048, GQA 32/8, ffn 8192.
    a.opt.hidden = 2048, a.opt.layers = 16, a.opt.heads = 32, a.opt.kv_heads = 8;
    a.opt.ffn = 8192, a.opt.vocab = 32000;
  } else if (a.preset == "7b") {
    a.opt.hidden = 4096, a.opt.layers = 32, a.opt.heads = 32, a.opt.kv_heads = 32;
    a.opt.ffn = 11008, a.opt.vocab = 32000;
  }
  a.opt.dtype = a.dtype == "f32" ? DType::kF32 : a.dtype == "f16" ? DType::kF16 : DType::kBF16;
  make_demo_model(a.out, a.opt);
  fmt::print(stderr,
             "wrote {}: llama, {} layers, hidden {}, ffn {}, heads {}/{}, vocab {}, {}, outlier "
             "channels [{}]\n",
             a.out, a.opt.layers, a.opt.hidden, a.opt.ffn, a.opt.heads, a.opt.kv_heads, a.opt.vocab,
             a.dtype, fmt::join(demo_outlier_channels(a.opt), ", "));
}

}  // namespace

Runner register_make_demo(CLI::App& app) {
  auto a = std::make_shared<MakeDemoArgs>();
  auto* c = app.add_subcommand(
      "make-demo-model",
      "Write a deterministic synthetic Llama model with activation-outlier channels (the embedded "
      "default model; sizes set by flags or --preset)");
  c->add_option("-o,--output", a->out, "Output directory (must not exist or be empty)")->required();
  c->add_option("--preset", a->preset, "Shape preset: 1b (Llama-3.2-1B-like) or 7b (Llama-2-7B)")
      ->check(CLI::IsMember({"1b", "7b"}));
  c->add_option("--hidden", a->opt.hidden, "Hidden size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--layers", a->opt.layers, "Decoder layers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--heads", a->opt.heads, "Attention heads")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--kv-heads", a->opt.kv_heads, "Key/value heads (GQA)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--ffn", a->opt.ffn, "MLP intermediate size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--vocab", a->opt.vocab, "Vocabulary size (>= 259)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--max-positions", a->opt.max_positions, "max_position_embeddings")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--seed", a->opt.seed, "Seed of the weights")->capture_default_str();
  c->add_option("--dtype", a->dtype, "Stored dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  c->add_option("--outliers", a->opt.n_outliers, "Outlier channels per norm")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  return [a] { run_make_demo(*a); };
}

}  // namespace sq::cli
