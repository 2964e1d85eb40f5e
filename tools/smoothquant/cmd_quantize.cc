// smoothquant quantize MODEL [--scheme channel-token] [--alpha A | --alpha auto | --no-smooth]
//                        (--act-scales F | --calib-text F ...) -o OUT_DIR
// Writes a compressed-tensors int-quantized checkpoint that vLLM serves and smoothquant runs.
#include <fmt/format.h>

#include <chrono>

#include "cli_common.h"
#include "core/error.h"
#include "eval/alpha_select.h"
#include "quant/export.h"
#include "quant/smooth.h"
#include "quant_flags.h"

namespace sq::cli {
namespace {

struct QuantizeArgs {
  std::string model, out, scheme = "channel-token", alpha;
  bool no_smooth = false, json = false;
  CalibFlags calib;
};

void run_quantize(const QuantizeArgs& a) {
  const Scheme scheme = parse_scheme_flag(a.scheme);
  const SchemeSpec spec = scheme_spec(scheme);
  // Reject what cannot be exported before any expensive work.
  make_compressed_tensors({spec.weight, spec.act, {"lm_head"}});
  SQ_CHECK(!(a.no_smooth && !a.alpha.empty()), "--alpha and --no-smooth exclude each other");
  SQ_CHECK(!std::filesystem::exists(a.out) ||
               (std::filesystem::is_directory(a.out) && std::filesystem::is_empty(a.out)),
           "-o {} already exists and is not an empty directory; choose a new output directory",
           a.out);
  const bool need_stats = !a.no_smooth || spec.act == ActGranularity::kPerTensorStatic;
  SQ_CHECK(!need_stats || !a.calib.act_scales.empty() || !a.calib.calib_text.empty(),
           "quantize needs activation statistics: pass --act-scales F or --calib-text F{}",
           spec.act == ActGranularity::kPerTensorStatic ? "" : " (or --no-smooth)");
  const auto t0 = std::chrono::steady_clock::now();
  ExportOptions opt;
  opt.scheme = scheme;
  std::optional<ActStats> stats;
  std::vector<AlphaChoice> choices;
  std::string alpha_desc = "none", auto_winner;
  if (need_stats) {
    // Statistics need the FP model in memory only when they are computed here (--calib-text);
    // with --act-scales the export streams from disk.
    if (!a.calib.act_scales.empty() && a.alpha != "auto") {
      stats = ActStats::load(a.calib.act_scales);
    } else {
      const Model model = Model::load(a.model);
      const auto tok = load_tokenizer(a.model);
      CalibContext ctx = resolve_calibration(model, *tok, a.calib, true);
      stats = std::move(ctx.stats);
      if (a.alpha == "auto" && !a.no_smooth) {
        SQ_CHECK(ctx.set.has_value(), "--alpha auto needs --calib-text");
        AlphaSearchOptions so;
        so.fallback_alpha = default_alpha(model.config());
        choices = search_alpha(model, *stats, *ctx.set, scheme, so, ctx.source);
        const AlphaSelection sel =
            select_alpha(model, *stats, *ctx.set, {scheme, false}, choices, ctx.source);
        opt.per_group_alpha = sel.per_group;
        auto_winner = sel.winner;
      }
    }
  }
  const ModelConfig cfg = load_model_config(a.model);
  if (!a.no_smooth) {
    if (a.alpha == "auto") {
      alpha_desc = "auto (" + auto_winner + ")";
    } else {
      float al = default_alpha(cfg);
      if (!a.alpha.empty()) {
        try {
          size_t pos = 0;
          al = std::stof(a.alpha, &pos);
          if (pos != a.alpha.size()) throw std::invalid_argument(a.alpha);
        } catch (const std::exception&) {
          fail("--alpha {}: not a number in [0, 1] or 'auto'", a.alpha);
        }
      }
      check_alpha(al, "--alpha");
      opt.alpha = al;
      alpha_desc = fmt::format("{:g}", al);
    }
  }
  opt.stats = stats ? &*stats : nullptr;
  opt.provenance = {{"sq.scheme", std::string(scheme_name(scheme))},
                    {"sq.alpha", alpha_desc},
                    {"sq.source_model", a.model}};
  if (stats) {
    opt.provenance["sq.calib_text"] =
        stats->info.text_file.empty() ? a.calib.act_scales : stats->info.text_file;
    opt.provenance["sq.calib_tokens"] = std::to_string(stats->info.tokens);
    opt.provenance["sq.calib_documents"] = std::to_string(stats->info.documents);
  }
  const ExportSummary s = export_int8_checkpoint(a.model, opt, a.out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    print_json({{"output", a.out},
                {"scheme", a.scheme},
                {"alpha", alpha_desc},
                {"linears", s.linears},
                {"input_bytes", s.fp_bytes},
                {"output_bytes", s.out_bytes},
                {"seconds", secs}});
    return;
  }
  fmt::print(
      "wrote {}: {} Linears as int8 ({}, smoothing α {}), {:.1f} MiB -> {:.1f} MiB in {:.1f}s\n",
      a.out, s.linears, a.scheme, alpha_desc, s.fp_bytes / 1048576.0, s.out_bytes / 1048576.0,
      secs);
  fmt::print(
      "serve it with vLLM (compressed-tensors int-quantized), or: smoothquant perplexity {} --text "
      "F\n",
      a.out);
}

}  // namespace

Runner register_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* c = app.add_subcommand(
      "quantize",
      "Smooth and quantize to a vLLM-loadable INT8 checkpoint (compressed-tensors int-quantized); "
      "streams layer by layer from disk");
  c->add_option("MODEL", a->model, "Hugging Face model directory (fp32/fp16/bf16)")
      ->required()
      ->check(model_dir_validator());
  c->add_option("-o,--output", a->out, "Output directory (must not exist or be empty)")->required();
  c->add_option("--scheme", a->scheme,
                "channel-token (vLLM's W8A8 default), o1 or o3 (o2/w8a8 are not servable)")
      ->capture_default_str();
  c->add_option("--alpha", a->alpha,
                "Smoothing strength in [0, 1] or 'auto' (default per model family)");
  c->add_flag("--no-smooth", a->no_smooth, "Quantize without smoothing");
  add_calib_flags(c, a->calib, true);
  c->add_flag("--json", a->json, "Print a JSON summary");
  return [a] { run_quantize(*a); };
}

}  // namespace sq::cli
