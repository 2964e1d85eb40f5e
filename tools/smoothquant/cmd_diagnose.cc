// smoothquant diagnose MODEL --quant S [--alpha A | --no-smooth] (--act-scales F | --calib-text F)
//                        --text F [--tokens 256] [--top 20] [--json]
#include <fmt/format.h>

#include "cli_common.h"
#include "core/error.h"
#include "eval/diagnose.h"
#include "quant_flags.h"

namespace sq::cli {
namespace {

struct DiagnoseArgs {
  std::string model, text;
  QuantFlags quant;
  int64_t tokens = 256, top = 20;
  bool json = false;
};

void run_diagnose(const DiagnoseArgs& a) {
  SQ_CHECK(!a.quant.scheme.empty(), "diagnose needs --quant SCHEME ({})", scheme_list());
  const Scheme scheme = parse_scheme_flag(a.quant.scheme);
  const std::string text = read_text_arg(a.text, "--text");
  const Model model = Model::load(a.model);
  const auto tok = load_tokenizer(a.model);
  auto ids = tok->encode(text);
  const int64_t n =
      std::min<int64_t>({a.tokens, static_cast<int64_t>(ids.size()), model.config().max_positions});
  ids.resize(static_cast<size_t>(n));
  CalibContext calib = resolve_calibration(model, *tok, a.quant.calib, true);
  BuiltQuant b = build_from_flags(model, scheme, a.quant.alpha, a.quant.no_smooth,
                                  a.quant.quant_bmm, calib, parse_mode_flag(a.quant.mode));
  const Diagnosis d = diagnose(model, b.q, *calib.stats, ids);
  if (a.json) {
    Json lin = Json::array(), grp = Json::array();
    for (const auto& e : d.linears) {
      lin.push_back({{"name", e.name},
                     {"layer", e.layer},
                     {"rel_error", e.rel_error},
                     {"input_outlier_ratio", e.input_absmax_ratio}});
    }
    for (const auto& g : d.groups) {
      grp.push_back({{"norm", g.norm},
                     {"consumer", g.consumer},
                     {"ratio_before", g.ratio_before},
                     {"ratio_after", g.ratio_after},
                     {"alpha", g.alpha}});
    }
    print_json({{"model", a.model},
                {"quant", b.description},
                {"tokens", d.tokens},
                {"linears", lin},
                {"groups", grp}});
    return;
  }
  fmt::print("{} quantized as {}, {} tokens of {}\n\n", a.model, b.description, d.tokens, a.text);
  fmt::print("Linear output error vs FP (worst first):\n");
  fmt::print("  {:<48} {:>10} {:>16}\n", "linear", "rel error", "input max/med");
  for (int64_t i = 0; i < std::min<int64_t>(a.top, static_cast<int64_t>(d.linears.size())); ++i) {
    const auto& e = d.linears[i];
    fmt::print("  {:<48} {:>10.4f} {:>16.1f}\n", e.name, e.rel_error, e.input_absmax_ratio);
  }
  fmt::print("\nActivation outliers per smoothing group (channel abs-max, max/median):\n");
  fmt::print("  {:<48} {:>10} {:>10} {:>6}\n", "norm", "before", "after", "α");
  for (const auto& g : d.groups) {
    fmt::print("  {:<48} {:>10.1f} {:>10.1f} {:>6}\n", g.norm, g.ratio_before, g.ratio_after,
               g.ratio_after == g.ratio_before && g.alpha == 0 ? std::string("-")
                                                               : fmt::format("{:.2f}", g.alpha));
  }
}

}  // namespace

Runner register_diagnose(CLI::App& app) {
  auto a = std::make_shared<DiagnoseArgs>();
  auto* c = app.add_subcommand(
      "diagnose",
      "Where a quantized model degrades: per-Linear relative output error vs FP (worst first) and "
      "per-layer activation outliers before/after smoothing");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_option("--text", a->text, "Text whose first --tokens tokens are run")->required();
  c->add_option("--tokens", a->tokens, "Tokens to run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--top", a->top, "Linears to list")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_flag("--json", a->json, "One JSON object");
  add_quant_flags(c, a->quant, true);
  return [a] { run_diagnose(*a); };
}

}  // namespace sq::cli
