// End-to-end tests of the SmoothQuant commands (calibrate, smooth, perplexity --quant, evaluate,
// diagnose) on the shared models, and their bad-input behaviour.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "test_util.h"

namespace sq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct CmdResult {
  int code = -1;
  std::string out, err;
};

class CliQuantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("sq_cliq_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  CmdResult run(const std::string& args) {
    const std::string out = (tmp_ / "stdout").string(), err = (tmp_ / "stderr").string();
    const int status =
        std::system((std::string(SQ_CLI_PATH) + " " + args + " >" + out + " 2>" + err).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text_file(out), read_text_file(err)};
  }
  void expect_user_error(const std::string& args, const std::string& fragment) {
    const CmdResult r = run(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  std::string model(const std::string& m) const {
    return (test::shared_dir() / "models" / m).string();
  }
  std::string golden(const std::string& f) const {
    return (test::shared_dir() / "golden" / f).string();
  }
  std::string slice() const {
    return (test::shared_dir() / "data/tinystories-valid-slice.txt").string();
  }

  fs::path tmp_;
};

// calibrate on the text (tokenized by us, split on <|endoftext|>, first 64, seq-len 256) gives the
// original tool's act scales.
TEST_F(CliQuantTest, CalibrateReproducesGoldenActScales) {
  SQ_REQUIRE_SHARED();
  const fs::path out = tmp_ / "scales.safetensors";
  const CmdResult r = run("calibrate " + model("opt-synth") + " --text " + slice() +
                          " --samples 64 --seq-len 256 -o " + out.string() + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["documents"], 64);
  const auto mine = SafetensorsFile::open(out);
  const auto ref = SafetensorsFile::open(golden("opt-synth/act_scales.safetensors"));
  ASSERT_EQ(mine.tensors().size(), ref.tensors().size());
  for (const auto& [name, t] : ref.tensors()) {
    const auto a = mine.get(name).to_f32(), b = t.to_f32();
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j)
      ASSERT_NEAR(a[j], b[j], 1e-5 * std::fabs(b[j]) + 1e-7) << name << " " << j;
  }
  EXPECT_EQ(mine.metadata().at("sq.documents"), "64");
  EXPECT_EQ(mine.metadata().at("sq.calib_text"), slice());
}

TEST_F(CliQuantTest, SmoothWritesAFunctionPreservingCheckpointInTheOriginalDtype) {
  SQ_REQUIRE_SHARED();
  const fs::path out = tmp_ / "smoothed";
  const CmdResult r =
      run("smooth " + model("qwen2-synth") + " --act-scales " +
          golden("qwen2-synth/act_scales.safetensors") + " --alpha 0.5 -o " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto st = SafetensorsFile::open(out / "model.safetensors");
  const auto& w = st.get("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(w.dtype, DType::kBF16);
  // Rounded once from the fp32 golden smoothed weights.
  const auto ref = SafetensorsFile::open(golden("qwen2-synth/smooth_alpha0.5.safetensors"))
                       .get("model.layers.0.self_attn.q_proj.weight")
                       .to_f32();
  const auto mine = w.to_f32();
  int mismatched = 0;
  for (size_t i = 0; i < ref.size(); ++i) mismatched += bf16_to_f32(f32_to_bf16(ref[i])) != mine[i];
  EXPECT_LE(mismatched, static_cast<int>(ref.size() / 1000))
      << "bf16 values differing from round(golden)";
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(out / "config.json"));
  // The smoothed model computes the same function (bf16 rounding of the rescaled weights aside).
  const CmdResult a =
      run("perplexity " + model("qwen2-synth") + " --text " + slice() + " --max-windows 4 --json");
  const CmdResult b =
      run("perplexity " + out.string() + " --text " + slice() + " --max-windows 4 --json");
  ASSERT_EQ(a.code, 0);
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NEAR(json::parse(b.out)["ppl"].get<double>() / json::parse(a.out)["ppl"].get<double>(),
              1.0, 5e-3);
}

TEST_F(CliQuantTest, PerplexityWithQuantReportsKlAndTop1) {
  SQ_REQUIRE_SHARED();
  const CmdResult r = run("perplexity " + model("opt-synth") + " --text " + slice() +
                          " --max-windows 40 --quant o1 --alpha 0.5 --quant-bmm --act-scales " +
                          golden("opt-synth/act_scales.safetensors") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  const auto g =
      json::parse(read_text_file(golden("opt-synth/results.json")))["eval"]["tinystories"]["sq_o1"];
  EXPECT_LE(std::fabs(j["ppl"].get<double>() / g["ppl"].get<double>() - 1), 0.002);
  EXPECT_GT(j["top1_agree"].get<double>(), 0.9);
  EXPECT_LT(j["kl_mean"].get<double>(), 0.01);
  EXPECT_TRUE(j.contains("fp_ppl"));
}

TEST_F(CliQuantTest, EvaluateJsonHasThePaperRows) {
  SQ_REQUIRE_SHARED();
  const CmdResult r =
      run("evaluate " + model("opt-synth") + " --calib-text " + slice() +
          " --samples 16 --seq-len 128 --text " + slice() + " --max-windows 4 --alphas 0.5 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  std::vector<std::string> names;
  for (const auto& row : j["rows"]) names.push_back(row["name"]);
  EXPECT_EQ(names.size(), 6u);
  EXPECT_EQ(j["rows"][0]["scheme"], "w8a8");
  // On a model with outlier channels, smoothing must rescue per-token/per-channel quantization.
  const auto& naive = j["rows"][4];
  const auto& sq = j["rows"][5];
  EXPECT_EQ(naive["name"], "channel-token (no smoothing)");
  EXPECT_LT(sq["kl_mean"].get<double>(), naive["kl_mean"].get<double>() / 10);
}

TEST_F(CliQuantTest, DiagnoseListsWorstLinearsFirst) {
  SQ_REQUIRE_SHARED();
  const CmdResult r =
      run("diagnose " + model("opt-synth") + " --quant channel-token --no-smooth --act-scales " +
          golden("opt-synth/act_scales.safetensors") + " --text " + slice() + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  ASSERT_EQ(j["linears"].size(), 18u);  // 3 layers x 6 Linears
  for (size_t i = 1; i < j["linears"].size(); ++i) {
    EXPECT_GE(j["linears"][i - 1]["rel_error"].get<double>(),
              j["linears"][i]["rel_error"].get<double>());
  }
  ASSERT_EQ(j["groups"].size(), 6u);
  EXPECT_GT(j["groups"][0]["ratio_before"].get<double>(), 50.0);  // the injected outliers
}

TEST_F(CliQuantTest, BadInputIsAClearErrorWithoutOutput) {
  SQ_REQUIRE_SHARED();
  const std::string tiny = model("tinystories-656k");
  // Act scales of another model: missing keys / wrong width.
  expect_user_error("smooth " + tiny + " --act-scales " +
                        golden("opt-synth/act_scales.safetensors") + " --alpha 0.5 -o " +
                        (tmp_ / "o1").string(),
                    "another model");
  EXPECT_FALSE(fs::exists(tmp_ / "o1"));
  expect_user_error("smooth " + model("qwen2-synth") + " --act-scales " +
                        golden("tinystories-656k/act_scales.safetensors") + " --alpha 0.5 -o " +
                        (tmp_ / "o2").string(),
                    "another model");
  expect_user_error("smooth " + tiny + " --act-scales " +
                        golden("tinystories-656k/act_scales.safetensors") + " --alpha 1.5 -o " +
                        (tmp_ / "o3").string(),
                    "outside [0, 1]");
  EXPECT_FALSE(fs::exists(tmp_ / "o3"));
  // Calibration text problems.
  const fs::path seps = tmp_ / "seps.txt";
  std::ofstream(seps) << "<|endoftext|>\n  \n<|endoftext|>\n";
  expect_user_error(
      "calibrate " + tiny + " --text " + seps.string() + " -o " + (tmp_ / "s.st").string(),
      "no non-empty document");
  EXPECT_FALSE(fs::exists(tmp_ / "s.st"));
  expect_user_error("calibrate " + tiny + " --text " + slice() + " --separator '@@@' -o " +
                        (tmp_ / "s.st").string(),
                    "never occurs");
  // O3 needs its static scales from a calibration pass.
  expect_user_error("perplexity " + tiny + " --text " + slice() + " --quant o3 --act-scales " +
                        golden("tinystories-656k/act_scales.safetensors"),
                    "--calib-text");
  expect_user_error("perplexity " + tiny + " --text " + slice() + " --quant int4 --no-smooth",
                    "unknown scheme");
  expect_user_error("perplexity " + tiny + " --text " + slice() + " --quant o1", "--act-scales");
  expect_user_error("perplexity " + tiny + " --text " + slice() + " --alpha 0.5", "--quant");
}

}  // namespace
}  // namespace sq

namespace sq {
namespace {

// quantize -> reload -> perplexity equals the in-memory INT8 result; the export follows the
// compressed-tensors layout vLLM loads.
TEST_F(CliQuantTest, QuantizeExportsAServableCheckpointThatReloads) {
  SQ_REQUIRE_SHARED();
  for (const std::string scheme : {"channel-token", "o3"}) {
    SCOPED_TRACE(scheme);
    const fs::path out = tmp_ / ("q-" + scheme);
    const std::string calib = " --calib-text " + slice() + " --samples 64 --seq-len 256";
    const CmdResult q = run("quantize " + model("qwen2-synth") + " --scheme " + scheme +
                            " --alpha 0.5" + calib + " -o " + out.string() + " --json");
    ASSERT_EQ(q.code, 0) << q.err;
    // Layout: I8 weights, [N, 1] bf16 scales (channel) or [1] (tensor), input_scale for static.
    const auto st = SafetensorsFile::open(out / "model.safetensors");
    const std::string p = "model.layers.1.mlp.down_proj";
    EXPECT_EQ(st.get(p + ".weight").dtype, DType::kI8);
    EXPECT_EQ(st.get(p + ".weight").shape, std::vector<int64_t>({256, 512}));
    EXPECT_EQ(st.get(p + ".weight_scale").dtype, DType::kBF16);
    if (scheme == "channel-token") {
      EXPECT_EQ(st.get(p + ".weight_scale").shape, std::vector<int64_t>({256, 1}));
      EXPECT_EQ(st.find(p + ".input_scale"), nullptr);
    } else {
      EXPECT_EQ(st.get(p + ".weight_scale").shape, std::vector<int64_t>({1}));
      EXPECT_EQ(st.get(p + ".input_scale").shape, std::vector<int64_t>({1}));
    }
    EXPECT_EQ(st.get("lm_head.weight").dtype, DType::kBF16);
    EXPECT_EQ(st.get("model.layers.0.self_attn.q_proj.bias").dtype, DType::kBF16);
    EXPECT_EQ(st.metadata().at("sq.scheme"), scheme);
    const auto cfg = json::parse(read_text_file(out / "config.json"));
    const auto& qc = cfg["quantization_config"];
    EXPECT_EQ(qc["quant_method"], "compressed-tensors");
    EXPECT_EQ(qc["format"], "int-quantized");
    EXPECT_EQ(qc["ignore"], json::parse(R"(["lm_head"])"));
    const auto& g = qc["config_groups"]["group_0"];
    EXPECT_EQ(g["weights"]["strategy"], scheme == "o3" ? "tensor" : "channel");
    EXPECT_EQ(g["input_activations"]["strategy"], scheme == "o3" ? "tensor" : "token");
    EXPECT_EQ(g["input_activations"]["dynamic"], scheme != "o3");

    const CmdResult reload = run("perplexity " + out.string() + " --text " + slice() + " --json");
    ASSERT_EQ(reload.code, 0) << reload.err;
    const CmdResult mem =
        run("perplexity " + model("qwen2-synth") + " --text " + slice() + " --quant " + scheme +
            " --alpha 0.5 --mode int8" + calib + " --json");
    ASSERT_EQ(mem.code, 0) << mem.err;
    const double a = json::parse(reload.out)["ppl"].get<double>(),
                 b = json::parse(mem.out)["ppl"].get<double>();
    // The file stores scales in bf16 (the model dtype, as vLLM expects), the in-memory path in
    // fp32.
    EXPECT_LE(std::fabs(a / b - 1), 1e-3) << "reloaded " << a << " in-memory " << b;
  }
}

TEST_F(CliQuantTest, QuantizeRejectsUnservableSchemesAndBadInt8Checkpoints) {
  SQ_REQUIRE_SHARED();
  expect_user_error(
      "quantize " + model("opt-synth") + " --scheme o2 --no-smooth -o " + (tmp_ / "x").string(),
      "vLLM");
  EXPECT_FALSE(fs::exists(tmp_ / "x"));
  const fs::path good = tmp_ / "good";
  ASSERT_EQ(run("quantize " + model("opt-synth") + " --no-smooth -o " + good.string()).code, 0);
  const std::string text = " --text " + slice() + " --max-windows 2";
  ASSERT_EQ(run("perplexity " + good.string() + text).code, 0);
  auto corrupt = [&](const std::string& name,
                     const std::function<void(std::vector<TensorBlob>&)>& edit) {
    const fs::path d = tmp_ / name;
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(good)) {
      if (e.path().filename() != "model.safetensors")
        fs::copy_file(e.path(), d / e.path().filename());
    }
    const auto st = SafetensorsFile::open(good / "model.safetensors");
    std::vector<TensorBlob> blobs;
    for (const auto& [n, t] : st.tensors())
      blobs.push_back({n, t.dtype, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)});
    edit(blobs);
    write_safetensors(d / "model.safetensors", blobs);
    return d;
  };
  const std::string p = "model.decoder.layers.0.fc1";
  const fs::path bad_scale = corrupt("bad_scale", [&](auto& b) {
    for (auto& t : b) {
      if (t.name == p + ".weight_scale") {
        t.shape = {t.shape[0] / 2, 2};
      }
    }
  });
  expect_user_error("perplexity " + bad_scale.string() + text, "weight_scale");
  const fs::path bad_weight = corrupt("bad_weight", [&](auto& b) {
    for (auto& t : b) {
      if (t.name == p + ".weight") t.shape = {t.shape[1], t.shape[0]};
    }
  });
  expect_user_error("perplexity " + bad_weight.string() + text, "must be I8");
  const fs::path bad_cfg = corrupt("bad_cfg", [](auto&) {});
  auto cfg = json::parse(read_text_file(bad_cfg / "config.json"));
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 4;
  std::ofstream(bad_cfg / "config.json") << cfg.dump();
  expect_user_error("inspect " + bad_cfg.string(), "8-bit");
  cfg["quantization_config"]["quant_method"] = "gptq";
  std::ofstream(bad_cfg / "config.json") << cfg.dump();
  expect_user_error("perplexity " + bad_cfg.string() + text, "quant_method");
}

}  // namespace
}  // namespace sq
