// smoothquant generate MODEL --prompt STR [-n 64] [--temperature 0] [--top-p 1] [--seed S]
//                        [--device cpu|cuda]
// Greedy at temperature 0, otherwise temperature + nucleus sampling. Text streams to stdout as
// tokens are produced; timing goes to stderr.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <random>
#include <span>

#include "cli_common.h"
#include "core/error.h"
#include "model/model.h"
#include "quant/device_model.h"
#include "quant/int8_linear.h"
#include "tokenizer/tokenizer.h"

namespace sq::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt;
  int64_t n = 64;
  float temperature = 0.0f, top_p = 1.0f;
  uint64_t seed = 0;
  bool json = false;
  std::string device = "cpu";
};

int32_t sample(const float* logits, int64_t vocab, float temperature, float top_p,
               std::mt19937_64& rng) {
  if (temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  const float mx = *std::max_element(logits, logits + vocab);
  std::vector<double> p(static_cast<size_t>(vocab));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += p[i] = std::exp((logits[i] - mx) / temperature);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // Nucleus: the smallest prefix whose mass reaches top_p (always at least one token).
  double mass = 0;
  size_t keep = 0;
  while (keep < order.size() && (keep == 0 || mass < top_p * sum)) mass += p[order[keep++]];
  std::uniform_real_distribution<double> u(0.0, mass);
  double r = u(rng);
  for (size_t i = 0; i < keep; ++i) {
    r -= p[order[i]];
    if (r <= 0) return order[i];
  }
  return order[keep - 1];
}

// Length of the longest prefix of s that ends on a UTF-8 character boundary.
size_t complete_utf8_prefix(const std::string& s) {
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i, ++back;
  if (i == 0) return s.size();
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return (back + 1 >= need) ? s.size() : i - 1;
}

void run_generate(const GenerateArgs& a) {
  SQ_CHECK(!a.prompt.empty(), "--prompt is empty; give the text to continue");
  const LoadedModel loaded = load_model(a.model);
  const Model& model = *loaded.model;
  ForwardOptions fo = loaded.forward_options();
  fo.last_logits_only = true;
  const auto tok = load_tokenizer(a.model);
  const auto& cfg = model.config();
  std::vector<int32_t> ids = tok->encode(a.prompt);
  SQ_CHECK(!ids.empty(), "--prompt produced no tokens");
  const int64_t total = static_cast<int64_t>(ids.size()) + a.n;
  SQ_CHECK(total <= cfg.max_positions,
           "prompt ({} tokens) + -n {} exceeds the model's {} positions; shorten one of them",
           ids.size(), a.n, cfg.max_positions);
  // One step of the model over the cache: the CPU engine, or a GPU engine (bf16 Linears for FP
  // models, real INT8 for INT8 checkpoints).
  std::optional<KvCache> cache;
  std::unique_ptr<DeviceEngine> engine;
  if (a.device == "cuda") {
    engine = loaded.int8() ? make_device_engine(model, *loaded.executor)
                           : make_device_engine(model, DevicePrecision::kBf16);
    engine->reset(total);
  } else {
    cache.emplace(cfg, total);
  }
  auto step = [&](std::span<const int32_t> tokens, std::vector<float>& out) {
    if (engine) {
      engine->forward(tokens.data(), static_cast<int64_t>(tokens.size()), out, true);
    } else {
      model.forward(tokens, *cache, out, fo);
    }
  };
  std::vector<float> logits;
  std::mt19937_64 rng(a.seed);
  const size_t n_prompt = ids.size();
  const auto t0 = std::chrono::steady_clock::now();
  step(ids, logits);
  const auto t1 = std::chrono::steady_clock::now();
  std::optional<int32_t> eos = tok->eos_id();
  if (!eos) eos = cfg.eos_id;
  // Decode prompt + continuation and print what lies beyond the decoded prompt: decoders that
  // strip a leading space or merge bytes then come out exactly as in a full decode.
  const std::string base = tok->decode(ids, true);
  std::string printed = base;
  std::vector<int32_t> all_ids = ids;
  if (!a.json) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  int64_t generated = 0;
  std::vector<int32_t> out_ids;
  for (; generated < a.n; ++generated) {
    const int32_t next = sample(logits.data(), cfg.vocab_size, a.temperature, a.top_p, rng);
    if (eos && next == *eos) break;
    out_ids.push_back(next);
    all_ids.push_back(next);
    if (!a.json) {
      const std::string text = tok->decode(all_ids, true);
      const size_t upto = complete_utf8_prefix(text);
      if (upto > printed.size() && text.compare(0, printed.size(), printed) == 0) {
        std::fwrite(text.data() + printed.size(), 1, upto - printed.size(), stdout);
        std::fflush(stdout);
        printed = text.substr(0, upto);
      }
    }
    if (generated + 1 == a.n) {
      ++generated;
      break;
    }
    const int32_t one[1] = {next};
    step(one, logits);
  }
  const auto t2 = std::chrono::steady_clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  const std::string full = tok->decode(all_ids, true);
  const std::string completion = full.compare(0, base.size(), base) == 0
                                     ? full.substr(base.size())
                                     : tok->decode(out_ids, true);
  if (a.json) {
    print_json({{"prompt", a.prompt},
                {"completion", completion},
                {"prompt_ids", std::vector<int32_t>(ids.begin(), ids.begin() + n_prompt)},
                {"ids", out_ids},
                {"device", a.device},
                {"engine", engine ? engine->describe() : std::string("fp32 CPU engine")},
                {"prefill_tokens_per_second", prefill_s > 0 ? n_prompt / prefill_s : 0.0},
                {"decode_tokens_per_second", decode_s > 0 ? out_ids.size() / decode_s : 0.0}});
    return;
  }
  if (full.size() > printed.size() && full.compare(0, printed.size(), printed) == 0) {
    std::fputs(full.c_str() + printed.size(), stdout);
  }
  std::fputs("\n", stdout);
  std::fflush(stdout);
  fmt::print(stderr, "prompt {} tokens at {:.1f} tok/s, generated {} tokens at {:.1f} tok/s\n",
             n_prompt, prefill_s > 0 ? n_prompt / prefill_s : 0.0, out_ids.size(),
             decode_s > 0 ? out_ids.size() / decode_s : 0.0);
}

}  // namespace

Runner register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* c =
      app.add_subcommand("generate", "Continue a prompt (greedy, or temperature/top-p sampling)");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_option("-p,--prompt", a->prompt, "Text to continue")->required();
  c->add_option("-n,--n-tokens", a->n, "Maximum new tokens")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  c->add_option("--temperature", a->temperature, "0 = greedy")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-p", a->top_p, "Nucleus sampling mass")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  c->add_option("--device", a->device,
                "cpu, or cuda: bf16 Linears on the GPU (real INT8 for INT8 checkpoints); llama, "
                "mistral, qwen2")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_flag("--json", a->json, "Print one JSON object instead of streaming text");
  return [a] { run_generate(*a); };
}

}  // namespace sq::cli
