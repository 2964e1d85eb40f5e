// Decoders of tokenizer.json ("decoder": {...}): turn the token strings of an id sequence back into
// text. Like the tokenizers library each decoder rewrites the list of token strings (so Strip acts
// on each string of the list it is given: per token before a Fuse, on the whole text after one),
// and the final list is concatenated. Supported: Sequence, Replace, ByteFallback, Fuse, Strip,
// ByteLevel, Metaspace; other types are rejected at load time.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace sq {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  std::string decode(std::vector<std::string> tokens) const;
};

// Builds the decoder of `spec`; nullptr for JSON null. `where` names the file for errors.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& spec, const std::string& where);

}  // namespace sq
