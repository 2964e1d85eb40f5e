// The tokenizer.json pipeline of the Hugging Face tokenizers library, applied verbatim:
//   split raw text on normalized=false added tokens -> normalize each remaining piece -> split on
//   normalized=true added tokens -> pre-tokenize -> BPE per word -> post-process (BOS etc.).
// Decoding maps ids to token strings (added tokens first), optionally drops special tokens and
// runs the decoder chain. Only the BPE model is supported; loading anything else fails with an
// error that names the file and the unsupported component.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace sq {

class HfTokenizer final : public Tokenizer {
 public:
  // `root` is the parsed tokenizer.json, `where` its path for messages. bos_name / eos_name come
  // from tokenizer_config.json when it names them.
  HfTokenizer(const nlohmann::json& root, const std::string& where,
              const std::optional<std::string>& bos_name,
              const std::optional<std::string>& eos_name);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string id_to_token(int32_t id) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  bool is_special(int32_t id) const override;

 private:
  std::optional<int32_t> token_to_id(std::string_view token) const;
  void parse_post_processor(const nlohmann::json& spec, const std::string& where);
  void tokenize_normalized(std::string_view text, bool at_start, std::vector<int32_t>& out) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<AddedVocabulary> added_;
  // Single-sequence template of the post-processor: prefix + ids + suffix when add_special.
  std::vector<int32_t> special_prefix_;
  std::vector<int32_t> special_suffix_;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace sq
