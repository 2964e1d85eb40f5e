#include "quant_flags.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"
#include "eval/alpha_select.h"
#include "quant/device_model.h"
#include "quant/smooth.h"

namespace sq::cli {

void add_calib_flags(CLI::App* c, CalibFlags& f, bool act_scales_allowed) {
  if (act_scales_allowed) {
    c->add_option("--act-scales", f.act_scales,
                  "Act scales from `smoothquant calibrate` (or the original SmoothQuant tool)");
  }
  c->add_option("--calib-text", f.calib_text, "Calibration text (documents split by --separator)");
  c->add_option("--samples", f.samples, "Calibration documents (the first N, in file order)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--seq-len", f.seq_len, "Truncate each calibration document to N tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--separator", f.separator,
                "Document separator (default: <|endoftext|> when present, else a blank line)");
  c->add_flag("--shuffle", f.shuffle, "Shuffle the documents before taking --samples");
  c->add_option("--seed", f.seed, "Shuffle seed")->capture_default_str();
}

void add_quant_flags(CLI::App* c, QuantFlags& f, bool with_scheme) {
  if (with_scheme) {
    c->add_option("--quant", f.scheme,
                  "Quantization scheme: " + scheme_list() + " (omit for the FP model)");
  }
  c->add_option("--alpha", f.alpha,
                "Smoothing strength in [0, 1], or 'auto' (per-layer search); default per model "
                "family (0.5 OPT, 0.85 Llama/Qwen2, 0.8 Mistral)");
  c->add_flag("--no-smooth", f.no_smooth, "Quantize without smoothing");
  c->add_flag("--quant-bmm", f.quant_bmm,
              "Also quantize q/k/v outputs (the BMM inputs), before RoPE");
  add_mode_flag(c, f.mode);
  add_calib_flags(c, f.calib, true);
}

float default_alpha(const ModelConfig& cfg) {
  switch (cfg.arch) {
    case Arch::kOpt:
      return 0.5f;
    case Arch::kMistral:
      return 0.8f;
    default:
      return 0.85f;
  }
}

void add_mode_flag(CLI::App* c, std::string& mode) {
  c->add_option(
       "--mode", mode,
       "fake: simulate the scheme in fp32; int8: run real int8 GEMMs (on the CPU, or the GPU "
       "with --device cuda)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fake", "int8"}));
}

QuantMode parse_mode_flag(const std::string& s) {
  return s == "int8" ? QuantMode::kInt8 : QuantMode::kFake;
}

Scheme parse_scheme_flag(const std::string& s) {
  const auto sc = parse_scheme(s);
  SQ_CHECK(sc.has_value(), "--quant {}: unknown scheme (choose one of {})", s, scheme_list());
  return *sc;
}

CalibContext resolve_calibration(const Model& model, const Tokenizer& tok, const CalibFlags& f,
                                 bool need_stats) {
  CalibContext c;
  c.on_device = f.on_device;
  if (!f.calib_text.empty()) {
    const std::string text = read_text_arg(f.calib_text, "--calib-text");
    CalibOptions o{f.separator, f.samples, f.seq_len, f.shuffle, f.seed};
    c.set = make_calib_set(text, tok, o, "--calib-text " + f.calib_text);
    log::info("calibration set: {} documents, {} tokens", c.set->docs.size(), c.set->tokens);
  }
  if (!f.act_scales.empty()) {
    c.stats = ActStats::load(f.act_scales);
    c.source = "--act-scales " + f.act_scales;
    c.stats->validate_for(model, c.source);
  } else if (need_stats) {
    SQ_CHECK(c.set.has_value(),
             "smoothing needs activation statistics: pass --act-scales F or --calib-text F (or "
             "--no-smooth)");
    c.stats = f.on_device ? calibrate_on_device(model, *c.set) : calibrate(model, *c.set);
    c.stats->info.text_file = f.calib_text;
    c.source = "calibration of --calib-text " + f.calib_text;
  }
  return c;
}

BuiltQuant build_from_flags(const Model& model, Scheme scheme, const std::string& alpha,
                            bool no_smooth, bool quant_bmm, CalibContext& calib, QuantMode mode,
                            bool keep_fp_weights) {
  BuiltQuant b;
  QuantSetup setup;
  setup.quant = {scheme, quant_bmm, mode};
  setup.keep_fp_weights = keep_fp_weights;
  if (calib.on_device) setup.calibrator = calibrate_on_device;
  std::string smooth_desc = "no smoothing";
  if (!no_smooth) {
    if (alpha == "auto") {
      SQ_CHECK(calib.set.has_value(),
               "--alpha auto needs --calib-text (it searches α on the calibration activations)");
      AlphaSearchOptions o;
      o.fallback_alpha = default_alpha(model.config());
      b.alpha_choices = search_alpha(model, *calib.stats, *calib.set, scheme, o, calib.source);
      const AlphaSelection sel =
          select_alpha(model, *calib.stats, *calib.set, setup.quant, b.alpha_choices, calib.source);
      setup.per_group_alpha = sel.per_group;
      for (size_t i = 0; i < b.alpha_choices.size(); ++i)
        b.alpha_choices[i].alpha = sel.per_group[i];
      b.alpha_winner = sel.winner;
      smooth_desc = fmt::format("α auto ({})", sel.winner);
    } else {
      float a = default_alpha(model.config());
      if (!alpha.empty()) {
        try {
          size_t pos = 0;
          a = std::stof(alpha, &pos);
          if (pos != alpha.size()) throw std::invalid_argument(alpha);
        } catch (const std::exception&) {
          fail("--alpha {}: not a number in [0, 1] or 'auto'", alpha);
        }
      }
      check_alpha(a, "--alpha");
      setup.alpha = a;
      smooth_desc = fmt::format("α {:g}", a);
    }
  }
  b.q = build_quant_model(model, setup, calib.stats ? &*calib.stats : nullptr,
                          calib.set ? &*calib.set : nullptr, calib.source);
  b.description =
      fmt::format("{}, {}{}, {}", scheme_name(scheme), smooth_desc, quant_bmm ? ", bmm" : "",
                  mode == QuantMode::kInt8 ? "int8" : "fake-quant");
  return b;
}

}  // namespace sq::cli
