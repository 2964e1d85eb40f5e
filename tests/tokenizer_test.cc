// Tokenizer tests: the golden cases of ../shared/golden/tokenization.json (HF tokenizers output for
// the TinyStories SentencePiece-style BPE and the GPT-2 byte-level BPE), the two evaluation token
// streams, and error handling for broken tokenizer directories.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "sentencepiece_trainer.h"
#include "test_util.h"

namespace sq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path tinystories_dir() { return test::shared_dir() / "models" / "tinystories-656k"; }
fs::path gpt2_dir() { return test::shared_dir() / "golden" / "tokenizers" / "gpt2"; }

const json& golden() {
  static const json g =
      json::parse(read_bytes(test::shared_dir() / "golden" / "tokenization.json"));
  return g;
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// Checks every golden case of one tokenizer; decoded_skip_special only where it is a spec.
void check_cases(const std::string& name, const fs::path& dir, bool check_skip_special) {
  const auto tok = load_tokenizer(dir);
  const json& cases = golden().at(name).at("cases");
  ASSERT_GT(cases.size(), 0u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    const auto text = c.at("text").get<std::string>();
    SCOPED_TRACE(::testing::Message() << name << " case " << i << ": " << json(text).dump());
    const auto ids = ids_of(c.at("ids"));
    EXPECT_EQ(tok->encode(text, true), ids);
    EXPECT_EQ(tok->encode(text, false), ids_of(c.at("ids_no_special")));
    EXPECT_EQ(tok->decode(ids, false), c.at("decoded").get<std::string>());
    std::vector<std::string> tokens;
    for (int32_t id : ids) tokens.push_back(tok->id_to_token(id));
    EXPECT_EQ(tokens, c.at("tokens").get<std::vector<std::string>>());
    if (check_skip_special) {
      EXPECT_EQ(tok->decode(ids, true), c.at("decoded_skip_special").get<std::string>());
    }
  }
}

TEST(TokenizerGolden, TinyStoriesCases) {
  SQ_REQUIRE_SHARED();
  // decoded_skip_special is an observation of transformers 5 for this tokenizer, not a spec
  // (golden README §3.1), so it is not checked.
  check_cases("tinystories", tinystories_dir(), /*check_skip_special=*/false);
}

TEST(TokenizerGolden, Gpt2Cases) {
  SQ_REQUIRE_SHARED();
  check_cases("gpt2", gpt2_dir(), /*check_skip_special=*/true);
}

TEST(TokenizerGolden, TinyStoriesEvalStream) {
  SQ_REQUIRE_SHARED();
  const auto tok = load_tokenizer(tinystories_dir());
  const auto text = read_bytes(test::shared_dir() / "data" / "tinystories-valid-slice.txt");
  const auto golden_ids = SafetensorsFile::open(test::shared_dir() / "golden" / "tinystories-656k" /
                                                "eval_tokens.safetensors")
                              .get("tinystories")
                              .to_i32();
  ASSERT_EQ(golden_ids.size(), 29519u);
  EXPECT_EQ(tok->encode(text, true), golden_ids);
}

// The first `n` Unicode code points of UTF-8 text.
std::string first_code_points(const std::string& text, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (count == n) return text.substr(0, i);
      ++count;
    }
  }
  return text;
}

TEST(TokenizerGolden, Wiki200kEvalStream) {
  SQ_REQUIRE_SHARED();
  const auto tok = load_tokenizer(tinystories_dir());
  const auto raw = read_bytes(test::shared_dir() / "data" / "wikitext-2-raw" / "wiki.test.raw");
  const auto text = first_code_points(raw, 200000);
  const auto golden_ids = SafetensorsFile::open(test::shared_dir() / "golden" / "tinystories-656k" /
                                                "eval_tokens.safetensors")
                              .get("wiki200k")
                              .to_i32();
  ASSERT_EQ(golden_ids.size(), 86075u);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids, golden_ids);
  // The whole text is one BPE word for this tokenizer: merging must stay O(n log n).
  EXPECT_LT(secs, 2.0) << "tokenizing 200k chars took " << secs << " s";
  RecordProperty("wiki200k_encode_seconds", std::to_string(secs));
}

TEST(Tokenizer, EmptyText) {
  SQ_REQUIRE_SHARED();
  const auto tiny = load_tokenizer(tinystories_dir());
  EXPECT_EQ(tiny->encode("", true), std::vector<int32_t>{1});
  EXPECT_EQ(tiny->encode("", false), std::vector<int32_t>{});
  const auto gpt2 = load_tokenizer(gpt2_dir());
  EXPECT_EQ(gpt2->encode("", true), std::vector<int32_t>{});
}

TEST(Tokenizer, Gpt2RoundTripAscii) {
  SQ_REQUIRE_SHARED();
  const auto tok = load_tokenizer(gpt2_dir());
  const std::string text =
      "Hello, world! This is a round-trip test: 1 + 2 = 3.\n\tTabs,  double  spaces & symbols "
      "#@$%^*()[]{}<>~`|\\/ end.  ";
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
}

TEST(Tokenizer, SpecialTokensAndVocab) {
  SQ_REQUIRE_SHARED();
  const auto tiny = load_tokenizer(tinystories_dir());
  EXPECT_EQ(tiny->bos_id(), 1);
  EXPECT_EQ(tiny->eos_id(), 2);
  EXPECT_EQ(tiny->vocab_size(), 2048);
  EXPECT_TRUE(tiny->is_special(1));
  EXPECT_FALSE(tiny->is_special(80));
  // HF convert_ids_to_tokens gives the normalized form of normalized added tokens.
  EXPECT_EQ(tiny->id_to_token(1), "\xE2\x96\x81<|start_story|>");
  EXPECT_EQ(tiny->id_to_token(100000), "");
  // skip_special drops BOS, and the decoder's Strip removes the space of the leading "▁".
  const std::string story = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(tiny->decode(tiny->encode(story), true), story);

  const auto gpt2 = load_tokenizer(gpt2_dir());
  EXPECT_EQ(gpt2->vocab_size(), 50257);
  EXPECT_EQ(gpt2->bos_id(), 50256);
  EXPECT_EQ(gpt2->eos_id(), 50256);
  EXPECT_TRUE(gpt2->is_special(50256));
  EXPECT_EQ(gpt2->id_to_token(220), "\xC4\xA0");  // "Ġ", the mapped space byte
}

// A scratch tokenizer directory that is removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ =
        fs::temp_directory_path() /
        ("sq_tokenizer_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
  }

 private:
  fs::path path_;
};

// Expects load_tokenizer(dir) to throw sq::Error whose message contains every one of `parts`.
void expect_load_error(const fs::path& dir, const std::vector<std::string>& parts) {
  try {
    load_tokenizer(dir);
    ADD_FAILURE() << "load_tokenizer(" << dir << ") did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message should be one line: " << msg;
  }
}

TEST(TokenizerErrors, MissingDirectory) {
  expect_load_error("/nonexistent/sq_tokenizer_dir", {"/nonexistent/sq_tokenizer_dir"});
}

TEST(TokenizerErrors, NoTokenizerFiles) {
  TempDir dir;
  expect_load_error(dir.path(), {"no tokenizer.json or tokenizer.model"});
}

TEST(TokenizerErrors, InvalidJson) {
  TempDir dir;
  dir.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {)");
  expect_load_error(dir.path(), {"tokenizer.json", "invalid JSON"});
}

TEST(TokenizerErrors, MissingModel) {
  TempDir dir;
  dir.write("tokenizer.json", R"({"version": "1.0", "normalizer": null})");
  expect_load_error(dir.path(), {"tokenizer.json", "model"});
}

TEST(TokenizerErrors, UnsupportedModelType) {
  TempDir dir;
  dir.write("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  expect_load_error(dir.path(), {"tokenizer.json", "WordPiece"});
  dir.write("tokenizer.json", R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  expect_load_error(dir.path(), {"tokenizer.json", "Unigram"});
}

TEST(TokenizerErrors, UnsupportedComponents) {
  TempDir dir;
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})";
  dir.write("tokenizer.json", "{" + model + R"(, "normalizer": {"type": "Precompiled"}})");
  expect_load_error(dir.path(), {"tokenizer.json", "normalizer", "Precompiled"});
  dir.write("tokenizer.json", "{" + model + R"(, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
  expect_load_error(dir.path(), {"tokenizer.json", "pre_tokenizer", "BertPreTokenizer"});
  dir.write("tokenizer.json", "{" + model + R"(, "decoder": {"type": "CTC"}})");
  expect_load_error(dir.path(), {"tokenizer.json", "decoder", "CTC"});
}

TEST(TokenizerErrors, WrongFieldTypes) {
  TempDir dir;
  dir.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": "zero"}}})");
  expect_load_error(dir.path(), {"tokenizer.json"});
  dir.write("tokenizer.json",
            R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
  expect_load_error(dir.path(), {"tokenizer.json", "merge"});
}

// A small hand-written tokenizer.json exercising the Llama-3/Qwen2 pipeline pieces: NFC, Split +
// ByteLevel(use_regex=false), ignore_merges, array-form merges and an lstrip/rstrip added token.
TEST(Tokenizer, SplitByteLevelIgnoreMerges) {
  TempDir dir;
  // Vocab over byte-mapped chars: "Ġ" (U+0120) is the space byte.
  const json tj = {
      {"model",
       {{"type", "BPE"},
        {"ignore_merges", true},
        {"vocab",
         {{"a", 0},
          {"b", 1},
          {"c", 2},
          {"\u0120", 3},
          {"ab", 4},
          {"abc", 5},
          {"\u00C3", 6},  // byte C3 (first byte of "é")
          {"\u0120a", 7},
          {"bc", 8},
          {"\u00A9", 10}}},  // byte A9 (second byte of "é")
        {"merges", json::array({json::array({"a", "b"}), json::array({"\u0120", "a"})})}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern", {{"Regex", R"( ?\p{L}+|\s+)"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::array({{{"id", 9},
                                     {"content", "<|x|>"},
                                     {"lstrip", true},
                                     {"rstrip", true},
                                     {"normalized", false},
                                     {"special", true}}})}};
  dir.write("tokenizer.json", tj.dump());
  const auto tok = load_tokenizer(dir.path());
  // "abc" is in the vocab, so ignore_merges emits it whole although no merge builds it; "Ġab" is
  // not, and merge rank 0 (a b) wins over rank 1 (Ġ a).
  EXPECT_EQ(tok->encode("abc ab"), (std::vector<int32_t>{5, 3, 4}));
  // NFC composes "e" + U+0301 into U+00E9 (bytes C3 A9) before the byte mapping.
  EXPECT_EQ(tok->encode("e\u0301"), (std::vector<int32_t>{6, 10}));
  // lstrip/rstrip swallow the spaces around the added token.
  EXPECT_EQ(tok->encode("ab  <|x|>  c"), (std::vector<int32_t>{4, 9, 2}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{4, 9, 2}, true), "abc");
  EXPECT_EQ(tok->vocab_size(), 11);
}

// A directory with only tokenizer.model goes through libsentencepiece; the model is trained here
// so that the test needs no extra files.
TEST(Tokenizer, SentencePieceModelOnly) {
  TempDir dir;
  std::string corpus;
  for (int i = 0; i < 50; ++i) {
    corpus += "Once upon a time there was a little girl named Lily. She liked to play outside.\n";
    corpus += "One day she saw a big red ball in the park and wanted to play with it.\n";
  }
  dir.write("corpus.txt", corpus);
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + (dir.path() / "corpus.txt").string() +
      " --model_prefix=" + (dir.path() / "tokenizer").string() +
      " --vocab_size=80 --model_type=bpe --unk_id=0 --bos_id=1 --eos_id=2 --minloglevel=2");
  ASSERT_TRUE(status.ok()) << status.ToString();
  fs::remove(dir.path() / "corpus.txt");

  const auto tok = load_tokenizer(dir.path());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->vocab_size(), 80);
  EXPECT_TRUE(tok->is_special(1));
  const std::string text = "Lily saw a red ball.";
  const auto ids = tok->encode(text);
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(tok->encode(text, false), std::vector<int32_t>(ids.begin() + 1, ids.end()));
  EXPECT_EQ(tok->decode(ids, true), text);
  EXPECT_EQ(tok->id_to_token(100000), "");
}

}  // namespace
}  // namespace sq
