// Golden tests of the SmoothQuant pipeline against the original implementation's outputs
// (../shared/golden): act scales, static scales, smoothing factors and smoothed weights, and the
// fake-quant accuracy (ppl, KL, top-1) of every golden config, with the tolerances of
// golden/README.md §4.1.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/alpha_select.h"
#include "eval/compare.h"
#include "eval/perplexity.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/smooth.h"
#include "test_util.h"

namespace sq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path golden(const std::string& model) { return test::shared_dir() / "golden" / model; }

// The 64 calibration documents of the golden run, as token ids.
CalibSet golden_calib_set() {
  const auto st = SafetensorsFile::open(test::shared_dir() / "golden/calib_tokens.safetensors");
  const auto ids = st.get("ids").to_i32();
  const auto off = st.get("offsets").to_i32();
  CalibSet set;
  for (size_t i = 0; i + 1 < off.size(); ++i) {
    set.docs.emplace_back(ids.begin() + off[i], ids.begin() + off[i + 1]);
    set.tokens += off[i + 1] - off[i];
  }
  return set;
}

ActStats golden_act_scales(const std::string& model) {
  return ActStats::load(golden(model) / "act_scales.safetensors");
}

// Worst relative error of a against b, elementwise, relative to max|b| of the tensor for
// elements near zero (a tensor-scaled floor keeps zeros from dividing by zero).
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double bmax = 0, worst = 0;
  for (float v : b) bmax = std::max(bmax, std::fabs(double(v)));
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double denom = std::max(std::fabs(double(b[i])), 1e-3 * bmax);
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / denom);
  }
  return worst;
}

class QuantGolden : public ::testing::TestWithParam<std::string> {
 protected:
  Model load() const { return Model::load(test::shared_dir() / "models" / GetParam()); }
};

TEST_P(QuantGolden, ActScalesMatchTheOriginalCalibration) {
  SQ_REQUIRE_SHARED();
  const Model model = load();
  const ActStats mine = calibrate(model, golden_calib_set());
  const ActStats ref = golden_act_scales(GetParam());
  ASSERT_EQ(mine.linears().size(), ref.linears().size());  // every Linear, lm_head included
  for (const auto& [name, r] : ref.linears()) {
    ASSERT_TRUE(mine.linears().count(name)) << name;
    EXPECT_LE(rel_err(mine.linears().at(name).channel_absmax, r.channel_absmax), 1e-5) << name;
  }
  // Per-tensor statistics of the unsmoothed model (static_scales.json).
  const auto st = json::parse(read_text_file(golden(GetParam()) / "static_scales.json"));
  for (auto it = st["unsmoothed"].begin(); it != st["unsmoothed"].end(); ++it) {
    const auto& s = mine.linears().at(it.key());
    EXPECT_NEAR(s.input_absmax, it.value()["input"].get<double>(),
                1e-4 * it.value()["input"].get<double>())
        << it.key();
    EXPECT_NEAR(s.output_absmax, it.value()["output"].get<double>(),
                1e-4 * it.value()["output"].get<double>())
        << it.key();
  }
}

TEST_P(QuantGolden, SmoothingMatchesTheOriginalAtAlpha05) {
  SQ_REQUIRE_SHARED();
  Model model = load();
  const ActStats act = golden_act_scales(GetParam());
  const auto recs = smooth_model(
      model.mutable_weights(), model.config(), act, [](int, int) { return 0.5f; },
      "golden act scales");
  const auto ref = SafetensorsFile::open(golden(GetParam()) / "smooth_alpha0.5.safetensors");
  for (const auto& r : recs) {
    EXPECT_LE(rel_err(r.s, ref.get(r.norm + ".smooth_scale").to_f32()), 1e-6) << r.norm;
  }
  for (const auto& g : smoothing_groups(model.mutable_weights(), model.config())) {
    const auto& w = g.norm->weight;
    EXPECT_LE(rel_err({w.data(), w.data() + w.size()}, ref.get(g.norm->name + ".weight").to_f32()),
              1e-6);
    if (!g.norm->bias.empty()) {
      const auto& b = g.norm->bias;
      EXPECT_LE(rel_err({b.data(), b.data() + b.size()}, ref.get(g.norm->name + ".bias").to_f32()),
                1e-6);
    }
    for (const Linear* lin : g.linears) {
      const auto& lw = lin->weight;
      EXPECT_LE(
          rel_err({lw.data(), lw.data() + lw.size()}, ref.get(lin->name + ".weight").to_f32()),
          1e-6)
          << lin->name;
    }
  }
}

TEST_P(QuantGolden, SmoothingFactorsMatchAtAlpha085) {
  SQ_REQUIRE_SHARED();
  Model model = load();
  const auto recs = smooth_model(
      model.mutable_weights(), model.config(), golden_act_scales(GetParam()),
      [](int, int) { return 0.85f; }, "golden act scales");
  const auto ref = SafetensorsFile::open(golden(GetParam()) / "smooth_alpha0.85.safetensors");
  for (const auto& r : recs) {
    EXPECT_LE(rel_err(r.s, ref.get(r.norm + ".smooth_scale").to_f32()), 1e-6) << r.norm;
  }
}

TEST_P(QuantGolden, SmoothingPreservesTheFunctionAndStaticScalesMatch) {
  SQ_REQUIRE_SHARED();
  const Model fp = load();
  Model sm = fp;
  smooth_model(
      sm.mutable_weights(), sm.config(), golden_act_scales(GetParam()),
      [](int, int) { return 0.5f; }, "golden act scales");
  const auto ids = SafetensorsFile::open(golden(GetParam()) / "eval_tokens.safetensors")
                       .get("tinystories")
                       .to_i32();
  const std::vector<int32_t> first(ids.begin(), ids.begin() + 128);
  std::vector<float> a, b;
  KvCache c1(fp.config(), 128), c2(fp.config(), 128);
  fp.forward(first, c1, a);
  sm.forward(first, c2, b);
  double mx = 0;
  for (size_t i = 0; i < a.size(); ++i) mx = std::max(mx, std::fabs(double(a[i]) - b[i]));
  EXPECT_LE(mx, 1e-4) << "smoothing changed the FP logits";
  // Static (O3) scales come from a second pass over the smoothed model.
  const ActStats st = calibrate(sm, golden_calib_set());
  const auto ref =
      json::parse(read_text_file(golden(GetParam()) / "static_scales.json"))["smoothed_alpha0.5"];
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    EXPECT_NEAR(st.linears().at(it.key()).input_absmax, it.value()["input"].get<double>(),
                1e-4 * it.value()["input"].get<double>())
        << it.key();
    EXPECT_NEAR(st.linears().at(it.key()).output_absmax, it.value()["output"].get<double>(),
                1e-4 * it.value()["output"].get<double>())
        << it.key();
  }
}

struct GoldenConfig {
  const char* name;
  Scheme scheme;
  float alpha;  // < 0: no smoothing
  bool bmm;
  double ppl_tol, kl_tol;
};

const GoldenConfig kConfigs[] = {
    {"naive_w8a8", Scheme::kW8A8, -1, true, 0.05, 0.002},
    {"sq_o1", Scheme::kO1, 0.5f, true, 0.002, 0.0004},
    {"sq_o2", Scheme::kO2, 0.5f, true, 0.004, 0.007},
    {"naive_channel_token", Scheme::kChannelToken, -1, false, 0.002, 0.002},
    {"sq_channel_token", Scheme::kChannelToken, 0.5f, false, 0.002, 0.0005},
    {"sq_channel_token_a085", Scheme::kChannelToken, 0.85f, false, 0.002, 0.0007},
    {"naive_o3_static_own", Scheme::kO3, -1, true, 0.002, 0.0001},
    {"sq_o3_static_own", Scheme::kO3, 0.5f, true, 0.002, 0.001},
};

TEST_P(QuantGolden, FakeQuantConfigsMatchTheOriginal) {
  SQ_REQUIRE_SHARED();
  const Model fp = load();
  const ActStats act = golden_act_scales(GetParam());
  const CalibSet calib = golden_calib_set();
  const auto results = json::parse(read_text_file(golden(GetParam()) / "results.json"));
  std::vector<std::string> sets = {"tinystories"};
  if (GetParam() == "tinystories-656k") sets.push_back("wiki200k");
  for (const GoldenConfig& c : kConfigs) {
    QuantSetup setup;
    setup.quant = {c.scheme, c.bmm};
    if (c.alpha >= 0) setup.alpha = c.alpha;
    const QuantModel q = build_quant_model(fp, setup, &act, &calib, "golden act scales");
    for (const auto& set : sets) {
      SCOPED_TRACE(std::string(c.name) + " on " + set);
      const auto& g = results["eval"][set][c.name];
      const auto ids =
          SafetensorsFile::open(golden(GetParam()) / "eval_tokens.safetensors").get(set).to_i32();
      const auto r = perplexity(*q.model, ids, {256, 40}, q.forward_options());
      const double gppl = g["ppl"].get<double>();
      EXPECT_LE(std::fabs(r.ppl / gppl - 1), c.ppl_tol) << "ppl " << r.ppl << " vs " << gppl;
      // KL and top-1 on the 128-token logits run against the golden fp32 logits.
      const std::vector<int32_t> first(ids.begin(), ids.begin() + 128);
      KvCache cache(fp.config(), 128);
      std::vector<float> logits;
      q.model->forward(first, cache, logits, q.forward_options());
      const auto ref =
          SafetensorsFile::open(golden(GetParam()) / ("logits_" + set + ".safetensors"))
              .get("fp32")
              .to_f32();
      DistComparison d;
      d.add(ref.data(), logits.data(), 128, fp.config().vocab_size);
      const double gkl = g["kl_vs_fp32_mean"].get<double>();
      EXPECT_LE(std::fabs(d.kl_mean() - gkl), std::max(c.kl_tol, 0.25 * gkl))
          << "KL " << d.kl_mean() << " vs " << gkl;
      EXPECT_LE(std::fabs(d.top1() - g["top1_agree_vs_fp32"].get<double>()), 0.05)
          << "top-1 " << d.top1();
    }
  }
}

// --alpha auto (issue: "at least as well as the best single global α"). Recomputed here
// independently of select_alpha's bookkeeping: the calibration KL of the configuration it picks
// is no worse than that of global α 0.5 and 0.85 (the paper's defaults), built through the
// public API, on the same documents; and the reported KL matches the recomputation.
TEST_P(QuantGolden, AutoAlphaIsNoWorseThanGlobalAlphaOnCalibration) {
  SQ_REQUIRE_SHARED();
  const Model fp = Model::load(test::shared_dir() / "models" / GetParam());
  const ActStats act = golden_act_scales(GetParam());
  // Four calibration documents keep the 22 candidates × documents affordable (also under ASan).
  CalibSet calib = golden_calib_set();
  calib.docs.resize(4);
  calib.tokens = 0;
  for (const auto& d : calib.docs) calib.tokens += static_cast<int64_t>(d.size());
  const QuantConfig quant{Scheme::kO1, false, QuantMode::kFake};
  AlphaSearchOptions o;
  const auto per_group = search_alpha(fp, act, calib, quant.scheme, o, "golden act scales");
  const AlphaSelection sel = select_alpha(fp, act, calib, quant, per_group, "golden act scales");
  ASSERT_EQ(sel.per_group.size(), per_group.size());

  auto calib_kl = [&](const QuantSetup& setup) {
    const QuantModel q = build_quant_model(fp, setup, &act, &calib, "golden act scales");
    DistComparison cmp;
    std::vector<float> a, b;
    for (const auto& doc : calib.docs) {
      KvCache c1(fp.config(), static_cast<int64_t>(doc.size()));
      KvCache c2(fp.config(), static_cast<int64_t>(doc.size()));
      fp.forward(doc, c1, a);
      q.model->forward(doc, c2, b, q.forward_options());
      cmp.add(a.data(), b.data(), static_cast<int64_t>(doc.size()), fp.config().vocab_size);
    }
    return cmp.kl_mean();
  };
  QuantSetup chosen;
  chosen.quant = quant;
  chosen.per_group_alpha = sel.per_group;
  const double kl_auto = calib_kl(chosen);
  EXPECT_NEAR(kl_auto, sel.kl, 1e-9 + 1e-6 * sel.kl) << sel.winner;
  for (float alpha : {0.5f, 0.85f}) {
    QuantSetup g;
    g.quant = quant;
    g.alpha = alpha;
    EXPECT_LE(kl_auto, calib_kl(g) * (1 + 1e-9))
        << "auto (" << sel.winner << ") vs global " << alpha;
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, QuantGolden,
                         ::testing::Values("tinystories-656k", "opt-synth", "qwen2-synth"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return n;
                         });

}  // namespace
}  // namespace sq
