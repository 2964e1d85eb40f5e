// smoothquant bench MODEL [-p 512] [-n 64] [--scheme channel-token] [-r 3] [--json]
// End-to-end speed of the INT8 engine against the fp32 engine in one run: prefill (one forward of
// p tokens) and decode (n single-token steps over a KV cache) tokens/s, and bytes of Linear
// weights. Speed does not depend on the smoothing factors, so the INT8 model is quantized without
// smoothing; dynamic schemes only (o3 needs calibration and runs at the same speed as o1).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "backend/cpu/gemm_s8.h"
#include "backend/registry.h"
#include "cli_common.h"
#include "core/error.h"
#include "core/parallel.h"
#include "io/hf_config.h"
#include "quant/device_model.h"
#include "quant/fake_quant.h"
#include "quant/int8_linear.h"
#include "quant_flags.h"

namespace sq::cli {
namespace {

struct BenchArgs {
  std::string model, scheme = "channel-token", device = "cpu";
  int64_t prompt = 512, n = 64, reps = 3;
  bool json = false, random_weights = false;
};

struct Speed {
  double prefill_tps = 0, decode_tps = 0;
};

Speed measure(const Model& m, const ForwardOptions& fo, const std::vector<int32_t>& prompt,
              int64_t n, int64_t reps) {
  Speed best;
  std::vector<float> logits;
  for (int64_t r = 0; r < reps; ++r) {
    KvCache cache(m.config(), static_cast<int64_t>(prompt.size()) + n);
    ForwardOptions last = fo;
    last.last_logits_only = true;
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(prompt, cache, logits, last);
    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t tok[1] = {static_cast<int32_t>((i * 7919) % m.config().vocab_size)};
      m.forward(tok, cache, logits, last);
    }
    const auto t2 = std::chrono::steady_clock::now();
    // Best of the repetitions: the least disturbed run on a shared machine.
    best.prefill_tps =
        std::max(best.prefill_tps, prompt.size() / std::chrono::duration<double>(t1 - t0).count());
    best.decode_tps = std::max(best.decode_tps, n / std::chrono::duration<double>(t2 - t1).count());
  }
  return best;
}

Speed measure_device(DeviceEngine& e, const std::vector<int32_t>& prompt, int64_t n, int64_t reps,
                     int64_t vocab) {
  Speed best;
  std::vector<float> logits;
  for (int64_t r = 0; r < reps + 1; ++r) {  // the first repetition warms up (plans, caches)
    e.reset(static_cast<int64_t>(prompt.size()) + n);
    const auto t0 = std::chrono::steady_clock::now();
    e.forward(prompt.data(), static_cast<int64_t>(prompt.size()), logits, true);
    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t tok[1] = {static_cast<int32_t>((i * 7919) % vocab)};
      e.forward(tok, 1, logits, true);
    }
    const auto t2 = std::chrono::steady_clock::now();
    if (r == 0) continue;
    best.prefill_tps =
        std::max(best.prefill_tps, prompt.size() / std::chrono::duration<double>(t1 - t0).count());
    best.decode_tps = std::max(best.decode_tps, n / std::chrono::duration<double>(t2 - t1).count());
  }
  return best;
}

// --device cuda: the bf16 engine against the INT8 engine of --scheme on the GPU.
void run_bench_device(const BenchArgs& a) {
  SQ_CHECK(a.device == "cuda", "--device {}: use cpu or cuda", a.device);
  const Scheme scheme = parse_scheme_flag(a.scheme);
  SQ_CHECK(scheme_spec(scheme).act != ActGranularity::kPerTensorStatic,
           "bench runs dynamic schemes (channel-token, o1, o2, w8a8); o3 runs at o2's speed");
  const ModelConfig cfg = load_model_config(a.model);
  SQ_CHECK(a.prompt + a.n <= cfg.max_positions, "-p {} + -n {} exceeds the model's {} positions",
           a.prompt, a.n, cfg.max_positions);
  std::optional<Model> fp;
  if (!a.random_weights) fp.emplace(Model::load(a.model));
  std::vector<int32_t> prompt(static_cast<size_t>(a.prompt));
  for (int64_t i = 0; i < a.prompt; ++i)
    prompt[i] = static_cast<int32_t>((i * 104729 + 17) % cfg.vocab_size);
  Speed sp[2];
  int64_t bytes[2] = {0, 0};
  for (int i8 = 0; i8 < 2; ++i8) {  // one engine on the device at a time
    std::unique_ptr<DeviceEngine> e;
    if (a.random_weights) {
      DeviceModelSpec spec =
          random_device_spec(cfg, i8 ? DevicePrecision::kInt8 : DevicePrecision::kBf16);
      spec.act = device_act(scheme_spec(scheme).act);
      e = make_cuda_engine(spec);
    } else if (i8) {
      QuantSetup setup;
      setup.quant = {scheme, false, QuantMode::kInt8};
      setup.keep_fp_weights = true;
      const QuantModel q = build_quant_model(*fp, setup, nullptr, nullptr, "");
      e = make_device_engine(*q.model, dynamic_cast<const Int8Executor&>(*q.executor));
    } else {
      e = make_device_engine(*fp, DevicePrecision::kBf16);
    }
    sp[i8] = measure_device(*e, prompt, a.n, a.reps, cfg.vocab_size);
    bytes[i8] = e->linear_weight_bytes();
  }
  const auto devices = cuda_devices();
  const std::string devname = devices.empty() ? "cuda" : devices[0].name;
  if (a.json) {
    print_json({{"model", a.model},
                {"device", devname},
                {"random_weights", a.random_weights},
                {"scheme", a.scheme},
                {"prompt_tokens", a.prompt},
                {"decode_tokens", a.n},
                {"repetitions", a.reps},
                {"bf16",
                 {{"prefill_tokens_per_second", sp[0].prefill_tps},
                  {"decode_tokens_per_second", sp[0].decode_tps},
                  {"linear_weight_bytes", bytes[0]}}},
                {"int8",
                 {{"prefill_tokens_per_second", sp[1].prefill_tps},
                  {"decode_tokens_per_second", sp[1].decode_tps},
                  {"linear_weight_bytes", bytes[1]}}},
                {"speedup_prefill", sp[1].prefill_tps / sp[0].prefill_tps},
                {"speedup_decode", sp[1].decode_tps / sp[0].decode_tps},
                {"weight_bytes_ratio", static_cast<double>(bytes[1]) / bytes[0]}});
    return;
  }
  fmt::print("{} on {}{}: best of {}\n\n", a.model, devname,
             a.random_weights ? " (random weights)" : "", a.reps);
  fmt::print("| engine | prefill tok/s (p={}) | decode tok/s (n={}) | Linear weights |\n", a.prompt,
             a.n);
  fmt::print("|---|---|---|---|\n");
  fmt::print("| bf16 | {:.1f} | {:.2f} | {:.1f} MiB |\n", sp[0].prefill_tps, sp[0].decode_tps,
             bytes[0] / 1048576.0);
  fmt::print("| int8 {} | {:.1f} | {:.2f} | {:.1f} MiB |\n", a.scheme, sp[1].prefill_tps,
             sp[1].decode_tps, bytes[1] / 1048576.0);
  fmt::print("| ratio | {:.2f}x | {:.2f}x | {:.3f}x |\n", sp[1].prefill_tps / sp[0].prefill_tps,
             sp[1].decode_tps / sp[0].decode_tps, static_cast<double>(bytes[1]) / bytes[0]);
}

void run_bench(const BenchArgs& a) {
  if (a.device != "cpu") return run_bench_device(a);
  SQ_CHECK(!a.random_weights, "--random-weights needs --device cuda");
  const Scheme scheme = parse_scheme_flag(a.scheme);
  SQ_CHECK(scheme_spec(scheme).act != ActGranularity::kPerTensorStatic,
           "bench runs dynamic schemes (channel-token, o1, o2, w8a8); o3 runs at o1's speed");
  const Model fp = Model::load(a.model);
  const auto& cfg = fp.config();
  SQ_CHECK(a.prompt + a.n <= cfg.max_positions, "-p {} + -n {} exceeds the model's {} positions",
           a.prompt, a.n, cfg.max_positions);
  QuantSetup setup;
  setup.quant = {scheme, false, QuantMode::kInt8};
  const QuantModel q = build_quant_model(fp, setup, nullptr, nullptr, "");
  const auto* exec = dynamic_cast<const Int8Executor*>(q.executor.get());
  int64_t fp_bytes = 0;
  for_each_linear(fp.weights(), [&](int, const Linear& l) { fp_bytes += l.in * l.out * 4; });
  const int64_t int8_bytes = static_cast<int64_t>(exec->weight_bytes());

  std::vector<int32_t> prompt(static_cast<size_t>(a.prompt));
  for (int64_t i = 0; i < a.prompt; ++i)
    prompt[i] = static_cast<int32_t>((i * 104729 + 17) % cfg.vocab_size);
  const Speed f = measure(fp, {}, prompt, a.n, a.reps);
  const Speed i8 = measure(*q.model, q.forward_options(), prompt, a.n, a.reps);
  const std::string isa(cpu::isa_name(exec->isa()));
  if (a.json) {
    print_json({{"model", a.model},
                {"scheme", a.scheme},
                {"isa", isa},
                {"threads", num_threads()},
                {"prompt_tokens", a.prompt},
                {"decode_tokens", a.n},
                {"repetitions", a.reps},
                {"fp32",
                 {{"prefill_tokens_per_second", f.prefill_tps},
                  {"decode_tokens_per_second", f.decode_tps},
                  {"linear_weight_bytes", fp_bytes}}},
                {"int8",
                 {{"prefill_tokens_per_second", i8.prefill_tps},
                  {"decode_tokens_per_second", i8.decode_tps},
                  {"linear_weight_bytes", int8_bytes}}},
                {"speedup_prefill", i8.prefill_tps / f.prefill_tps},
                {"speedup_decode", i8.decode_tps / f.decode_tps},
                {"weight_bytes_ratio", static_cast<double>(int8_bytes) / fp_bytes}});
    return;
  }
  fmt::print("{}: {} layers, hidden {}; {} threads, int8 kernels {}; best of {}\n\n", a.model,
             cfg.n_layers, cfg.hidden_size, num_threads(), isa, a.reps);
  fmt::print("| engine | prefill tok/s (p={}) | decode tok/s (n={}) | Linear weights |\n", a.prompt,
             a.n);
  fmt::print("|---|---|---|---|\n");
  fmt::print("| fp32 | {:.1f} | {:.2f} | {:.1f} MiB |\n", f.prefill_tps, f.decode_tps,
             fp_bytes / 1048576.0);
  fmt::print("| int8 {} | {:.1f} | {:.2f} | {:.1f} MiB |\n", a.scheme, i8.prefill_tps,
             i8.decode_tps, int8_bytes / 1048576.0);
  fmt::print("| ratio | {:.2f}x | {:.2f}x | {:.3f}x |\n", i8.prefill_tps / f.prefill_tps,
             i8.decode_tps / f.decode_tps, static_cast<double>(int8_bytes) / fp_bytes);
}

}  // namespace

Runner register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* c = app.add_subcommand(
      "bench", "Prefill/decode speed and weight bytes: INT8 engine vs fp32, in one run");
  c->add_option("MODEL", a->model, "Hugging Face model directory (FP)")
      ->required()
      ->check(model_dir_validator());
  c->add_option("-p,--prompt", a->prompt, "Prompt tokens for prefill")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("-n,--n-tokens", a->n, "Decode steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("-r,--repetitions", a->reps, "Repetitions (best is reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--scheme", a->scheme, "INT8 scheme")->capture_default_str();
  c->add_option("--device", a->device, "cpu (fp32 vs INT8) or cuda (bf16 vs INT8 on the GPU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_flag("--random-weights", a->random_weights,
              "--device cuda: random weights of MODEL's shape (only config.json is read), for "
              "speed at sizes this machine cannot hold");
  c->add_flag("--json", a->json, "One JSON object");
  return [a] { run_bench(*a); };
}

}  // namespace sq::cli
