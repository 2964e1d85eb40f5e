// Normalizers of tokenizer.json ("normalizer": {...}): string -> string rewrites applied to each
// piece of text between non-normalized added tokens, before added tokens marked normalized are
// looked for. Supported: Sequence, Prepend, Replace (String or Regex pattern), NFC, NFD, NFKC,
// NFKD, Lowercase, Strip, StripAccents. Anything else (e.g. Precompiled, BertNormalizer) is
// rejected at load time with an error naming the type, never silently ignored.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace sq {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `s` is valid UTF-8 and so is the result.
  virtual std::string normalize(std::string s) const = 0;
};

// Builds the normalizer described by `spec`; nullptr for JSON null. `where` names the file.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec, const std::string& where);

}  // namespace sq
