// Golden tests of the fp32 engine against Hugging Face transformers (../shared/golden): logits of
// the first 128 tokens within 1e-4 absolute, and the perplexity protocol within 1e-5 relative, on
// a real pretrained Llama (fp32), OPT (fp16 on disk) and Qwen2 (bf16 on disk, q/k/v bias).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test_util.h"

namespace sq {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string model, set;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.model << "/" << c.set; }

class GoldenModelTest : public ::testing::TestWithParam<Case> {
 protected:
  fs::path model_dir() const { return test::shared_dir() / "models" / GetParam().model; }
  fs::path golden_dir() const { return test::shared_dir() / "golden" / GetParam().model; }
  std::vector<int32_t> stream() const {
    return SafetensorsFile::open(golden_dir() / "eval_tokens.safetensors")
        .get(GetParam().set)
        .to_i32();
  }
};

TEST_P(GoldenModelTest, LogitsMatchTransformers) {
  SQ_REQUIRE_SHARED();
  const Model model = Model::load(model_dir());
  const auto ids = stream();
  const std::vector<int32_t> first(ids.begin(), ids.begin() + 128);
  KvCache cache(model.config(), 128);
  std::vector<float> logits;
  model.forward(first, cache, logits);
  const auto golden =
      SafetensorsFile::open(golden_dir() / ("logits_" + GetParam().set + ".safetensors"))
          .get("fp32");
  ASSERT_EQ(golden.shape, std::vector<int64_t>({128, model.config().vocab_size}));
  const auto ref = golden.to_f32();
  ASSERT_EQ(ref.size(), logits.size());
  double max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(double(ref[i]) - logits[i]));
  EXPECT_LE(max_diff, 1e-4) << "max |Δlogit| against transformers";
  RecordProperty("max_abs_logit_diff", std::to_string(max_diff));
}

TEST_P(GoldenModelTest, IncrementalDecodingMatchesOneShot) {
  SQ_REQUIRE_SHARED();
  const Model model = Model::load(model_dir());
  const auto ids = stream();
  const std::vector<int32_t> first(ids.begin(), ids.begin() + 24);
  KvCache full(model.config(), 24), inc(model.config(), 24);
  std::vector<float> all, step;
  model.forward(first, full, all);
  // Prompt of 16, then one token at a time through the KV cache.
  model.forward(std::span(first).subspan(0, 16), inc, step, {.last_logits_only = true});
  const int64_t v = model.config().vocab_size;
  for (int64_t t = 16; t < 24; ++t) {
    model.forward(std::span(first).subspan(t, 1), inc, step);
    for (int64_t j = 0; j < v; ++j) ASSERT_NEAR(step[j], all[t * v + j], 1e-4) << t << " " << j;
  }
}

TEST_P(GoldenModelTest, PerplexityMatchesTransformers) {
  SQ_REQUIRE_SHARED();
  const Model model = Model::load(model_dir());
  const auto results = nlohmann::json::parse(read_text_file(golden_dir() / "results.json"));
  const auto& g = results["eval"][GetParam().set]["fp32"];
  const auto r = perplexity(model, stream(), {256, 40});
  EXPECT_EQ(r.n_windows, g["n_windows"].get<int64_t>());
  EXPECT_EQ(r.n_predicted, g["n_predicted"].get<int64_t>());
  const double ppl = g["ppl"].get<double>();
  EXPECT_LE(std::fabs(r.ppl - ppl) / ppl, 1e-5) << "ppl " << r.ppl << " vs golden " << ppl;
  const auto wn = g["window_nll"].get<std::vector<double>>();
  ASSERT_EQ(wn.size(), r.window_nll.size());
  // Per-window NLL sums of 255 predictions: the golden CPU/GPU noise was 1.2e-4 nats.
  for (size_t i = 0; i < wn.size(); ++i)
    EXPECT_NEAR(r.window_nll[i], wn[i], 5e-3) << "window " << i;
}

INSTANTIATE_TEST_SUITE_P(Shared, GoldenModelTest,
                         ::testing::Values(Case{"tinystories-656k", "tinystories"},
                                           Case{"tinystories-656k", "wiki200k"},
                                           Case{"opt-synth", "tinystories"},
                                           Case{"qwen2-synth", "tinystories"}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_" + info.param.set;
                           for (char& c : n)
                             c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

}  // namespace
}  // namespace sq
