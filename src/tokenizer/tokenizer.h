// The one tokenizer interface of smoothquant.cpp. Implementations: Hugging Face tokenizer.json BPE
// (byte-level like GPT-2/OPT/Llama-3/Qwen2, and SentencePiece-style with "▁" and byte fallback like
// Llama-2/TinyStories) and tokenizer.model files through libsentencepiece. Encoding with
// add_special=true reproduces HF `tokenizer(text)` (add_special_tokens=True) id for id.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`. add_special applies the post-processor (e.g. BOS), as HF does by default.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Text of `ids`, as HF decode(ids, skip_special_tokens, clean_up_tokenization_spaces=False).
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  // The vocabulary string of one id (HF convert_ids_to_tokens); "" when out of range.
  virtual std::string id_to_token(int32_t id) const = 0;
  // Number of ids (base vocabulary plus added tokens).
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool is_special(int32_t id) const = 0;
};

// Loads the tokenizer of a model directory (or a directory holding only tokenizer files):
// tokenizer.json when present, else tokenizer.model. tokenizer_config.json, when present, supplies
// the BOS/EOS token names. Throws sq::Error naming the file and the problem.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir);

}  // namespace sq
