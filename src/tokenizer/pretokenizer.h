// Pre-tokenizers of tokenizer.json ("pre_tokenizer": {...}): split normalized text into the words
// the model tokenizes independently. Supported: ByteLevel (GPT-2 regex + byte->char map), Split
// (String/Regex pattern, all five delimiter behaviours, invert), Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation and Sequence; other types are rejected at load time.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace sq {

// One piece of text on its way to the model. `at_start` is true while the piece begins at offset 0
// of the input (Metaspace's prepend_scheme "first" only prepends there).
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces; empty pieces are dropped.
  void split(std::vector<Piece>& pieces) const;
  virtual void split_one(Piece piece, std::vector<Piece>& out) const = 0;
};

// Builds the pre-tokenizer of `spec`; nullptr for JSON null. `where` names the file for errors.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec,
                                                 const std::string& where);

}  // namespace sq
