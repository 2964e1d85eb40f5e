// Tokenizer for directories that only ship a SentencePiece tokenizer.model (e.g. original Llama-2
// checkpoints): encoding and decoding go through libsentencepiece, and BOS is prepended when
// add_special, as Hugging Face's LlamaTokenizer does.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sq {

class SpmTokenizer final : public Tokenizer {
 public:
  // bos_name / eos_name (from tokenizer_config.json) override the model's own BOS/EOS pieces.
  SpmTokenizer(const std::filesystem::path& model_file, const std::optional<std::string>& bos_name,
               const std::optional<std::string>& eos_name);
  ~SpmTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string id_to_token(int32_t id) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  bool is_special(int32_t id) const override;

 private:
  std::optional<int32_t> piece_id(const std::string& piece) const;

  std::string where_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace sq
