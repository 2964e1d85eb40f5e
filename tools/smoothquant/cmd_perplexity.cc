// smoothquant perplexity MODEL --text FILE [--ctx 256] [--max-windows N] [--save-logits F] [--json]
// Protocol: NUMERICS.md §5 (non-overlapping windows, each run alone, tail dropped).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "cli_common.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"
#include "eval/compare.h"
#include "eval/perplexity.h"
#include "io/safetensors_writer.h"
#include "model/model.h"
#include "quant/device_model.h"
#include "quant/int8_linear.h"
#include "quant_flags.h"
#include "tokenizer/tokenizer.h"

namespace sq::cli {
namespace {

struct PerplexityArgs {
  std::string model, text, save_logits;
  int64_t ctx = 256, max_windows = 0;
  bool json = false;
  std::string device = "cpu";
  QuantFlags quant;
};

void run_perplexity(const PerplexityArgs& a) {
  const std::string text = read_text_arg(a.text, "--text");
  const auto t0 = std::chrono::steady_clock::now();
  const LoadedModel loaded = load_model(a.model);  // FP, or INT8 compressed-tensors
  const Model& model = *loaded.model;
  const bool cuda = a.device == "cuda";
  if (cuda)  // before any long calibration
    check_device_supported(model.config());
  // The GPU runs real INT8 only, so --quant defaults to --mode int8 there.
  const std::string mode = a.quant.mode.empty() ? (cuda ? "int8" : "fake") : a.quant.mode;
  SQ_CHECK(!(cuda && !a.quant.scheme.empty() && mode == "fake"),
           "--device cuda runs real INT8: use --mode int8 (or leave --mode out); fake "
           "quantization runs on the CPU");
  const auto tok = load_tokenizer(a.model);
  const auto ids = tok->encode(text);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("loaded {} and tokenized {} tokens in {:.2f}s", a.model, ids.size(), load_s);
  const auto& cfg = model.config();
  SQ_CHECK(a.ctx >= 2 && a.ctx <= cfg.max_positions,
           "--ctx {} is outside [2, {}] (the model has {} positions)", a.ctx, cfg.max_positions,
           cfg.max_positions);

  PerplexityOptions opt{a.ctx, a.max_windows};
  const int64_t n_windows = count_windows(static_cast<int64_t>(ids.size()), opt);
  SQ_CHECK(n_windows > 0,
           "--text {} has {} tokens, fewer than one window of --ctx {}; use a longer text or a "
           "smaller --ctx",
           a.text, ids.size(), a.ctx);
  std::optional<SafetensorsWriter> logits_out;
  if (!a.save_logits.empty()) {
    logits_out.emplace(
        a.save_logits,
        std::vector<TensorSpec>{{"logits", DType::kF32, {n_windows, a.ctx, cfg.vocab_size}}},
        std::map<std::string, std::string>{
            {"model", a.model}, {"text", a.text}, {"ctx", std::to_string(a.ctx)}});
  }
  WindowFn on_window;
  if (logits_out) {
    on_window = [&](int64_t, std::span<const int32_t>, const std::vector<float>& logits) {
      logits_out->write_f32(logits);
    };
  }
  // With --quant: the quantized variant, compared window by window with the FP model.
  std::optional<BuiltQuant> built;
  std::optional<QuantEvalResult> cmp;
  if (!a.quant.scheme.empty()) {
    SQ_CHECK(!loaded.int8(),
             "{} is already an INT8 checkpoint; --quant applies to floating-point models", a.model);
    const Scheme scheme = parse_scheme_flag(a.quant.scheme);
    SQ_CHECK(!(a.quant.no_smooth && !a.quant.alpha.empty()),
             "--alpha and --no-smooth exclude each other");
    const bool needs_stats = !a.quant.no_smooth;
    CalibFlags cf = a.quant.calib;
    cf.on_device = a.device == "cuda";
    CalibContext calib = resolve_calibration(model, *tok, cf, needs_stats);
    built = build_from_flags(model, scheme, a.quant.alpha, a.quant.no_smooth, a.quant.quant_bmm,
                             calib, parse_mode_flag(mode), cuda);
  } else {
    SQ_CHECK(
        a.quant.alpha.empty() && !a.quant.no_smooth && !a.quant.quant_bmm &&
            a.quant.calib.act_scales.empty() && a.quant.calib.calib_text.empty(),
        "--alpha, --no-smooth, --quant-bmm, --act-scales and --calib-text need --quant SCHEME");
  }
  PerplexityResult r;
  std::unique_ptr<DeviceEngine> engine;
  if (a.device == "cuda") {
    // FP models: bf16 Linears. --quant (--mode int8) and INT8 checkpoints: real INT8 Linears as
    // the CPU executor runs them, compared window by window with an fp32 engine of the FP model.
    std::unique_ptr<DeviceEngine> fp_engine;
    if (built) {
      const auto* exec = dynamic_cast<const Int8Executor*>(built->q.executor.get());
      SQ_CHECK(exec, "internal error: --device cuda built no INT8 executor for --quant {}",
               a.quant.scheme);
      engine = make_device_engine(*built->q.model, *exec, /*f32_lm_head=*/true);
      fp_engine = make_device_engine(model, DevicePrecision::kF32);
    } else if (loaded.int8()) {
      engine = make_device_engine(model, *loaded.executor);
    } else {
      engine = make_device_engine(model, DevicePrecision::kBf16);
    }
    log::info("--device cuda: {}", engine->describe());
    if (fp_engine) {
      cmp = evaluate_against_fp(*fp_engine, *engine, cfg, ids, opt, on_window);
      r = cmp->quant;
    } else {
      r = perplexity(*engine, cfg, ids, opt, on_window);
    }
  } else if (built) {
    const Model& qm = *built->q.model;
    cmp.emplace();
    DistComparison dist;
    KvCache fp_cache(cfg, a.ctx);
    std::vector<float> fp_logits;
    r = perplexity(qm, ids, opt, built->q.forward_options(),
                   [&](int64_t w, std::span<const int32_t> win, const std::vector<float>& logits) {
                     fp_cache.clear();
                     model.forward(win, fp_cache, fp_logits);
                     cmp->fp.nll_sum += window_nll(fp_logits.data(), win, cfg.vocab_size);
                     cmp->fp.n_predicted += static_cast<int64_t>(win.size()) - 1;
                     dist.add(fp_logits.data(), logits.data(), static_cast<int64_t>(win.size()),
                              cfg.vocab_size);
                     if (on_window) on_window(w, win, logits);
                   });
    cmp->fp.ppl = std::exp(cmp->fp.nll_sum / static_cast<double>(cmp->fp.n_predicted));
    cmp->kl_mean = dist.kl_mean();
    cmp->kl_max = dist.kl_max();
    cmp->top1 = dist.top1();
  } else {
    r = perplexity(model, ids, opt, loaded.forward_options(), on_window);
  }
  if (logits_out) logits_out->commit();
  const double tps = r.seconds > 0 ? r.n_windows * r.ctx / r.seconds : 0.0;
  if (a.json) {
    Json j = {{"ppl", r.ppl},
              {"nll_sum", r.nll_sum},
              {"n_predicted", r.n_predicted},
              {"n_windows", r.n_windows},
              {"ctx", r.ctx},
              {"n_tokens", ids.size()},
              {"window_nll", r.window_nll},
              {"seconds", r.seconds},
              {"tokens_per_second", tps},
              {"threads", num_threads()},
              {"model", a.model},
              {"text", a.text},
              {"device", a.device}};
    if (!a.quant.scheme.empty()) j["mode"] = mode;
    if (engine) j["engine"] = engine->describe();
    if (cmp) {
      j["kl_mean"] = cmp->kl_mean;
      j["kl_max"] = cmp->kl_max;
      j["top1_agree"] = cmp->top1;
      j["fp_ppl"] = cmp->fp.ppl;
      j["quant"] = built->description;
    }
    print_json(j);
    return;
  }
  fmt::print("model        {} ({}, {} layers, hidden {}{})\n", a.model, arch_name(cfg.arch),
             cfg.n_layers, cfg.hidden_size, loaded.int8() ? ", INT8 checkpoint" : "");
  fmt::print("text         {} ({} tokens)\n", a.text, ids.size());
  fmt::print("windows      {} x {} tokens ({} predictions)\n", r.n_windows, r.ctx, r.n_predicted);
  if (cmp) fmt::print("quantization {}\n", built->description);
  fmt::print("ppl          {:.4f}\n", r.ppl);
  if (cmp) {
    fmt::print("fp ppl       {:.4f} (Δ {:+.2f}%)\n", cmp->fp.ppl,
               100.0 * (r.ppl / cmp->fp.ppl - 1));
    fmt::print("KL vs FP     {:.3e} mean, {:.3e} max\n", cmp->kl_mean, cmp->kl_max);
    fmt::print("top-1 agree  {:.4f}\n", cmp->top1);
  }
  fmt::print("nll_sum      {:.4f}\n", r.nll_sum);
  fmt::print("speed        {:.0f} tokens/s ({:.2f}s, {} threads)\n", tps, r.seconds, num_threads());
}

}  // namespace

Runner register_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  auto* c = app.add_subcommand(
      "perplexity",
      "Perplexity of a model on a text: non-overlapping windows of --ctx tokens, each run alone");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_option("--text", a->text, "UTF-8 text file to evaluate (tokenized once as one string)")
      ->required();
  c->add_option("--ctx", a->ctx, "Window length in tokens")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  c->add_option("--max-windows", a->max_windows, "Evaluate at most N windows (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option(
      "--save-logits", a->save_logits,
      "Write the fp32 logits to a safetensors file: tensor 'logits' [windows, ctx, vocab]");
  c->add_option("--device", a->device,
                "cpu, or cuda: bf16 Linears on the GPU for FP models; real INT8 for --quant ... "
                "--mode int8 (any scheme, --quant-bmm) and INT8 checkpoints; llama/mistral/qwen2")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_flag("--json", a->json,
              "One JSON object on stdout: ppl, nll_sum, n_predicted, n_windows, ... (+ kl_mean, "
              "top1_agree with --quant)");
  add_quant_flags(c, a->quant, true);
  return [a] { run_perplexity(*a); };
}

}  // namespace sq::cli
