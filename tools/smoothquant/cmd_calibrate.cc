// smoothquant calibrate MODEL --text FILE [--samples 512] [--seq-len 512] [--separator STR]
//                         [--device cpu|cuda] -o SCALES.safetensors
#include <fmt/format.h>

#include "cli_common.h"
#include "core/error.h"
#include "model/model.h"
#include "quant/calibrate.h"
#include "quant/device_model.h"
#include "quant/smooth.h"

namespace sq::cli {
namespace {

struct CalibrateArgs {
  std::string model, text, out, separator;
  int64_t samples = 512, seq_len = 512;
  bool shuffle = false, json = false;
  uint64_t seed = 42;
  std::string device = "cpu";
};

void run_calibrate(const CalibrateArgs& a) {
  SQ_CHECK(!std::filesystem::is_directory(a.out),
           "-o {} is a directory; give a file name such as act_scales.safetensors", a.out);
  const std::string text = read_text_arg(a.text, "--text");
  const Model model = Model::load(a.model);
  if (a.device == "cuda") check_device_supported(model.config());
  const auto tok = load_tokenizer(a.model);
  const CalibSet set = make_calib_set(
      text, *tok, {a.separator, a.samples, a.seq_len, a.shuffle, a.seed}, "--text " + a.text);
  ActStats stats = a.device == "cuda" ? calibrate_on_device(model, set) : calibrate(model, set);
  stats.info.model = a.model;
  stats.info.text_file = a.text;
  stats.info.seq_len = a.seq_len;
  stats.save(a.out);
  if (a.json) {
    print_json({{"output", a.out},
                {"documents", stats.info.documents},
                {"tokens", stats.info.tokens},
                {"linears", stats.linears().size()},
                {"separator", set.separator},
                {"device", a.device}});
    return;
  }
  fmt::print(
      "wrote {}: act scales of {} Linears from {} documents, {} tokens (seq-len {}, separator "
      "{:?})\n",
      a.out, stats.linears().size(), stats.info.documents, stats.info.tokens, a.seq_len,
      set.separator);
}

}  // namespace

Runner register_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  auto* c = app.add_subcommand(
      "calibrate",
      "Measure per-channel activation abs-max of every Linear input (and per-tensor input/output "
      "abs-max) over calibration text; writes act scales keyed by HF module name");
  c->add_option("MODEL", a->model, "Hugging Face model directory")
      ->required()
      ->check(model_dir_validator());
  c->add_option("--text", a->text, "Calibration text; use text you do not evaluate on")->required();
  c->add_option("-o,--output", a->out, "Output .safetensors file")->required();
  c->add_option("--samples", a->samples, "Documents to use (the first N non-empty ones)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--seq-len", a->seq_len, "Truncate each document to N tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--separator", a->separator,
                "Document separator (default: <|endoftext|> when present, else a blank line)");
  c->add_flag("--shuffle", a->shuffle, "Shuffle documents before taking --samples");
  c->add_option("--seed", a->seed, "Shuffle seed")->capture_default_str();
  c->add_option("--device", a->device,
                "cpu, or cuda: run the documents through an fp32 engine on the GPU (llama, "
                "mistral, qwen2); same statistics up to fp32 summation order")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_flag("--json", a->json, "Print a JSON summary");
  return [a] { run_calibrate(*a); };
}

}  // namespace sq::cli
