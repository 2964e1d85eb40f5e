// smoothquant smooth MODEL --act-scales F --alpha A -o OUT_DIR: a smoothed HF checkpoint.
#include <fmt/format.h>

#include "cli_common.h"
#include "core/error.h"
#include "eval/diagnose.h"
#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/smooth.h"

namespace sq::cli {
namespace {

struct SmoothArgs {
  std::string model, act_scales, out;
  float alpha = 0.5f;
};

void run_smooth(const SmoothArgs& a) {
  check_alpha(a.alpha, "--alpha");
  Model model = Model::load(a.model);
  const ActStats stats = ActStats::load(a.act_scales);
  const std::string source = "--act-scales " + a.act_scales;
  stats.validate_for(model, source);
  const auto records = smooth_model(
      model.mutable_weights(), model.config(), stats, [&](int, int) { return a.alpha; }, source);
  write_smoothed_checkpoint(model, model.weights(), a.out,
                            {{"sq.smooth_alpha", fmt::format("{}", a.alpha)},
                             {"sq.act_scales", a.act_scales},
                             {"sq.calib_text", stats.info.text_file},
                             {"sq.calib_tokens", std::to_string(stats.info.tokens)}});
  // Outlier ratio of each group's input before and after (act / s), the effect smoothing has.
  double worst_before = 0, worst_after = 0;
  const ArchDescriptor& d = descriptor_for(model.config().arch);
  for (size_t i = 0; i < records.size(); ++i) {
    const int layer = static_cast<int>(i / d.smooth_groups.size());
    const LinearRole first = d.smooth_groups[i % d.smooth_groups.size()].linears.front();
    const Linear& lin = model.weights().layers[layer].linear(first);
    const auto& act = stats.get(lin.name, lin.in, source).channel_absmax;
    std::vector<float> after(act.size());
    for (size_t j = 0; j < act.size(); ++j) after[j] = act[j] / records[i].s[j];
    worst_before = std::max(worst_before, outlier_ratio(act));
    worst_after = std::max(worst_after, outlier_ratio(after));
  }
  fmt::print(
      "wrote {}: {} norms smoothed at α {:g}; worst activation outlier ratio (max/median) {:.1f} "
      "-> {:.1f}\n",
      a.out, records.size(), a.alpha, worst_before, worst_after);
}

}  // namespace

Runner register_smooth(CLI::App& app) {
  auto a = std::make_shared<SmoothArgs>();
  auto* c = app.add_subcommand(
      "smooth",
      "Write a smoothed checkpoint: norm weights divided by s, the Linears that read them "
      "multiplied by s (same function, easier activations)");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_option("--act-scales", a->act_scales, "Act scales from smoothquant calibrate")->required();
  c->add_option("--alpha", a->alpha,
                "Migration strength in [0, 1] (0.5 OPT, 0.85 Llama/Qwen2, 0.8 Mistral)")
      ->required();
  c->add_option("-o,--output", a->out, "Output directory (must not exist or be empty)")->required();
  return [a] { run_smooth(*a); };
}

}  // namespace sq::cli
