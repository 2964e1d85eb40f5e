// The quantization flags shared by perplexity, evaluate and diagnose (DESIGN.md §3):
//   --quant SCHEME [--alpha A | --alpha auto | --no-smooth] [--quant-bmm]
//   (--act-scales F | --calib-text F [--samples N] [--seq-len N] [--separator STR])
// and their resolution into act scales, a calibration set and a QuantSetup.
#pragma once

#include <optional>
#include <string>

#include "cli_common.h"
#include "model/model.h"
#include "quant/act_stats.h"
#include "quant/alpha_search.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "tokenizer/tokenizer.h"

namespace sq::cli {

struct CalibFlags {
  std::string act_scales, calib_text, separator;
  int64_t samples = 512, seq_len = 512;
  bool shuffle = false;
  uint64_t seed = 42;
  bool on_device = false;  // calibrate on the GPU (--device cuda)
};

struct QuantFlags {
  std::string scheme;  // empty: no quantization
  std::string alpha;   // "", a number, or "auto"
  bool no_smooth = false, quant_bmm = false;
  std::string mode;  // fake | int8; empty: fake on the CPU, int8 with --device cuda
  CalibFlags calib;
};

void add_calib_flags(CLI::App* c, CalibFlags& f, bool act_scales_allowed);
// with_scheme: add --quant (perplexity, diagnose); evaluate sets the schemes itself.
void add_quant_flags(CLI::App* c, QuantFlags& f, bool with_scheme);

// Calibration inputs resolved once: act scales (loaded or calibrated) and, with --calib-text,
// the calibration set (O3 static scales and --alpha auto need it).
struct CalibContext {
  std::optional<ActStats> stats;
  std::optional<CalibSet> set;
  std::string source;  // for error messages: the file the scales came from
  bool on_device = false;
};
CalibContext resolve_calibration(const Model& model, const Tokenizer& tok, const CalibFlags& f,
                                 bool need_stats);

// The default α of NUMERICS.md §4 for a model family.
float default_alpha(const ModelConfig& cfg);

// Builds the quantized variant described by the flags (scheme already validated).
struct BuiltQuant {
  QuantModel q;
  std::string description;                 // e.g. "channel-token, smoothed α 0.85"
  std::vector<AlphaChoice> alpha_choices;  // --alpha auto: the α finally used per group
  std::string alpha_winner;                // --alpha auto: "per-group" or "global A"
};
// keep_fp_weights: INT8 mode keeps the smoothed fp32 weights too (for the GPU upload).
BuiltQuant build_from_flags(const Model& model, Scheme scheme, const std::string& alpha,
                            bool no_smooth, bool quant_bmm, CalibContext& calib,
                            QuantMode mode = QuantMode::kFake, bool keep_fp_weights = false);
QuantMode parse_mode_flag(const std::string& s);
void add_mode_flag(CLI::App* c, std::string& mode);

Scheme parse_scheme_flag(const std::string& s);

}  // namespace sq::cli
