// End-to-end tests of the smoothquant binary: the CLI contract of DESIGN.md §3 (names, flags, JSON
// keys, --save-logits layout), the exit codes, and bad input (one-line error, exit 1, no output).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("sq_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  CmdResult run(const std::string& args) {
    const std::string out = (tmp_ / "stdout").string(), err = (tmp_ / "stderr").string();
    const std::string cmd = std::string(SQ_CLI_PATH) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    CmdResult r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text_file(out);
    r.err = read_text_file(err);
    return r;
  }

  // A user error: exit 1 and one line on stderr that contains `fragment`.
  void expect_user_error(const std::string& args, const std::string& fragment) {
    const CmdResult r = run(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }

  fs::path tiny() const { return test::shared_dir() / "models/tinystories-656k"; }
  fs::path slice() const { return test::shared_dir() / "data/tinystories-valid-slice.txt"; }

  // A copy of tinystories-656k whose tensors are rewritten by `edit`.
  fs::path broken_model(const std::function<void(std::vector<TensorBlob>&)>& edit) {
    const fs::path d = tmp_ / "model";
    fs::create_directories(d);
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(tiny() / f, d / f);
    }
    const auto st = SafetensorsFile::open(tiny() / "model.safetensors");
    std::vector<TensorBlob> blobs;
    for (const auto& [name, t] : st.tensors()) {
      TensorBlob b{name, t.dtype, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)};
      blobs.push_back(std::move(b));
    }
    edit(blobs);
    write_safetensors(d / "model.safetensors", blobs);
    return d;
  }

  fs::path tmp_;
};

TEST_F(CliTest, HelpAndUsageExitCodes) {
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("perplexity --help").code, 0);
  EXPECT_EQ(run("").code, 2);
  EXPECT_EQ(run("perplexity").code, 2);
  EXPECT_EQ(run("inspect /tmp --no-such-flag").code, 2);
  EXPECT_EQ(run("frobnicate").code, 2);
}

TEST_F(CliTest, TokenizeJsonMatchesGolden) {
  SQ_REQUIRE_SHARED();
  const CmdResult r =
      run("tokenize " + tiny().string() + " --text " +
          quote("Once upon a time, there was a little girl named Lily.") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  const auto g = json::parse(read_text_file(test::shared_dir() / "golden/tokenization.json"));
  EXPECT_EQ(j["ids"], g["tinystories"]["cases"][0]["ids"]);
  EXPECT_EQ(j["tokens"].size(), j["ids"].size());
}

TEST_F(CliTest, TokenizeAcceptsTokenizerOnlyDirectory) {
  SQ_REQUIRE_SHARED();
  const fs::path gpt2 = test::shared_dir() / "golden/tokenizers/gpt2";
  const CmdResult r =
      run("tokenize " + gpt2.string() + " --text " + quote("Hello world<|endoftext|>") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["ids"], json::parse("[15496, 995, 50256]"));
}

TEST_F(CliTest, PerplexityJsonMatchesGoldenAndSavesLogits) {
  SQ_REQUIRE_SHARED();
  const fs::path logits = tmp_ / "logits.safetensors";
  const CmdResult r = run("perplexity " + tiny().string() + " --text " + slice().string() +
                          " --ctx 256 --max-windows 40 --json --save-logits " + logits.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  const auto g =
      json::parse(read_text_file(test::shared_dir() / "golden/tinystories-656k/results.json"));
  const auto& fp = g["eval"]["tinystories"]["fp32"];
  EXPECT_LE(std::fabs(j["ppl"].get<double>() / fp["ppl"].get<double>() - 1), 1e-5);
  EXPECT_EQ(j["n_predicted"], fp["n_predicted"]);
  EXPECT_EQ(j["n_windows"], fp["n_windows"]);
  EXPECT_TRUE(j.contains("nll_sum"));

  const auto st = SafetensorsFile::open(logits);
  const auto& t = st.get("logits");
  ASSERT_EQ(t.dtype, DType::kF32);
  ASSERT_EQ(t.shape, std::vector<int64_t>({40, 256, 2048}));
  // Window 0 starts at token 0, so its first 128 rows are the golden 128-token logits.
  const auto ref = SafetensorsFile::open(test::shared_dir() /
                                         "golden/tinystories-656k/logits_tinystories.safetensors")
                       .get("fp32")
                       .to_f32();
  std::vector<float> mine(ref.size());
  to_f32(DType::kF32, t.data, mine.data(), mine.size());
  double mx = 0;
  for (size_t i = 0; i < ref.size(); ++i) mx = std::max(mx, std::fabs(double(ref[i]) - mine[i]));
  EXPECT_LE(mx, 1e-4);
}

TEST_F(CliTest, BadModelFilesAreOneLineErrors) {
  SQ_REQUIRE_SHARED();
  const std::string text = " --text " + slice().string();
  {
    const fs::path d = broken_model([](auto& b) {
      std::erase_if(
          b, [](const TensorBlob& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
    });
    expect_user_error("perplexity " + d.string() + text,
                      "missing tensor 'model.layers.1.mlp.up_proj.weight'");
    fs::remove_all(d);
  }
  {
    const fs::path d = broken_model([](auto& b) {
      for (auto& t : b) {
        if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {t.shape[1], t.shape[0]};
      }
    });
    expect_user_error("perplexity " + d.string() + text, "does not match its config");
    fs::remove_all(d);
  }
  {
    const fs::path d = broken_model([](auto&) {});
    fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") / 2);
    expect_user_error("perplexity " + d.string() + text, "model.safetensors");
    expect_user_error("inspect " + d.string(), "outside the data section");
    fs::remove_all(d);
  }
  {
    const fs::path d = broken_model([](auto&) {});
    std::ofstream(d / "config.json") << R"({"model_type": "mamba", "vocab_size": 10})";
    expect_user_error("inspect " + d.string(), "llama, mistral, qwen2, opt");
    std::ofstream(d / "config.json") << "{ broken";
    expect_user_error("inspect " + d.string(), "config.json");
    fs::remove_all(d);
  }
  {
    const fs::path d = broken_model([](auto&) {});
    std::ofstream(d / "tokenizer.json") << R"({"model": )";
    expect_user_error("tokenize " + d.string() + " --text hi", "tokenizer.json");
    fs::remove_all(d);
  }
}

TEST_F(CliTest, BadArgumentsAreOneLineErrorsWithoutOutput) {
  SQ_REQUIRE_SHARED();
  const fs::path empty = tmp_ / "empty.txt";
  std::ofstream(empty).close();
  expect_user_error("perplexity " + tiny().string() + " --text " + empty.string(), "empty");
  expect_user_error("perplexity " + tiny().string() + " --text " + (tmp_ / "nope.txt").string(),
                    "not found");
  const fs::path logits = tmp_ / "l.safetensors";
  expect_user_error("perplexity " + tiny().string() + " --text " + slice().string() +
                        " --ctx 4096 --save-logits " + logits.string(),
                    "positions");
  EXPECT_FALSE(fs::exists(logits));
  expect_user_error("generate " + tiny().string() + " --prompt ''", "--prompt");
  expect_user_error("generate " + tiny().string() + " --prompt hi -n 1000", "positions");
  EXPECT_EQ(run("perplexity /nonexistent --text x").code, 2);
}

TEST_F(CliTest, GenerateTellsAStory) {
  SQ_REQUIRE_SHARED();
  const CmdResult r =
      run("generate " + tiny().string() + " --prompt " + quote("Once upon a time") + " -n 40");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), 60u) << r.out;
  const CmdResult j = run("generate " + tiny().string() + " --prompt " + quote("Once upon a time") +
                          " -n 40 --json");
  ASSERT_EQ(j.code, 0) << j.err;
  // Greedy decoding is deterministic, and the streamed text equals the JSON completion.
  EXPECT_EQ(r.out, "Once upon a time" + json::parse(j.out)["completion"].get<std::string>() + "\n");
}

TEST_F(CliTest, DemoModelIsDeterministicAndRuns) {
  const std::string flags = " --hidden 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --vocab 300";
  ASSERT_EQ(run("make-demo-model -o " + (tmp_ / "a").string() + flags).code, 0);
  ASSERT_EQ(run("make-demo-model -o " + (tmp_ / "b").string() + flags).code, 0);
  EXPECT_EQ(read_text_file(tmp_ / "a/model.safetensors"),
            read_text_file(tmp_ / "b/model.safetensors"));
  expect_user_error("make-demo-model -o " + (tmp_ / "a").string() + flags,
                    "not an empty directory");
  const fs::path text = tmp_ / "t.txt";
  std::ofstream(text) << std::string(2000, 'a') << " the quick brown fox";
  const CmdResult r =
      run("perplexity " + (tmp_ / "a").string() + " --text " + text.string() + " --ctx 64 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const double ppl = json::parse(r.out)["ppl"].get<double>();
  EXPECT_TRUE(std::isfinite(ppl) && ppl > 1.0) << ppl;
  const CmdResult i = run("inspect " + (tmp_ / "a").string() + " --json");
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_EQ(json::parse(i.out)["arch"], "llama");
  EXPECT_EQ(run("generate " + (tmp_ / "a").string() + " --prompt hello -n 5").code, 0);
}

// --device cuda on a machine without a GPU (CI) is a clear user error, never a crash; with a GPU
// the engine runs and reports itself. --random-weights is a GPU-only speed mode.
TEST_F(CliTest, DeviceCudaIsAClearErrorWithoutAGpu) {
  SQ_REQUIRE_SHARED();
  const std::string args = "perplexity " + quote(tiny().string()) + " --text " +
                           quote(slice().string()) + " --max-windows 1 --device cuda --json";
  const CmdResult r = run(args);
  if (r.code == 0) {
    EXPECT_EQ(json::parse(r.out).at("device"), "cuda");
  } else {
    expect_user_error(args, "--device cuda");
  }
  expect_user_error("bench " + quote(tiny().string()) + " --random-weights", "--random-weights");
  const CmdResult bad = run("perplexity " + quote(tiny().string()) + " --text " +
                            quote(slice().string()) + " --device tpu");
  EXPECT_EQ(bad.code, 2) << bad.err;
}

}  // namespace
}  // namespace sq
