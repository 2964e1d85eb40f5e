// load_tokenizer: picks tokenizer.json (preferred, exact HF semantics) or tokenizer.model, and
// reads the BOS/EOS names of tokenizer_config.json when present.
#include "tokenizer/tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace sq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  SQ_CHECK(in.good(), "{}: cannot open file; check the path and its permissions", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json_file(const fs::path& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}; re-download the tokenizer files", path.string(), e.byte,
         e.what());
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...} or null.
std::optional<std::string> token_name(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
    return it->at("content").get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
  SQ_CHECK(fs::is_directory(dir), "tokenizer directory {} does not exist or is not a directory",
           dir.string());
  std::optional<std::string> bos_name;
  std::optional<std::string> eos_name;
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    const json config = parse_json_file(config_path);
    try {
      if (config.is_object()) {
        bos_name = token_name(config, "bos_token");
        eos_name = token_name(config, "eos_token");
      }
    } catch (const json::exception& e) {
      fail("{}: unexpected structure: {}", config_path.string(), e.what());
    }
  }

  const fs::path json_path = dir / "tokenizer.json";
  if (fs::exists(json_path)) {
    const json root = parse_json_file(json_path);
    try {
      return std::make_unique<HfTokenizer>(root, json_path.string(), bos_name, eos_name);
    } catch (const json::exception& e) {
      // Wrong field types or missing keys deep inside a component.
      fail("{}: unexpected structure: {}; re-download the tokenizer files", json_path.string(),
           e.what());
    }
  }
  const fs::path model_path = dir / "tokenizer.model";
  if (fs::exists(model_path)) return std::make_unique<SpmTokenizer>(model_path, bos_name, eos_name);
  fail("no tokenizer.json or tokenizer.model in {}; copy the tokenizer files of the model there",
       dir.string());
}

}  // namespace sq
