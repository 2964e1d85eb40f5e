// Added tokens of tokenizer.json ("added_tokens": [...]): strings that are cut out of the text
// before the model sees it. As in the tokenizers library, tokens with normalized=false are matched
// in the raw text, tokens with normalized=true are matched in the normalized text against their
// own normalized content (so with a Prepend("▁") normalizer "<s>" is looked for as "▁<s>").
// Matching is leftmost-longest over all patterns; lstrip/rstrip widen a match over neighbouring
// whitespace and single_word rejects matches glued to word characters. Decoding and
// id_to_token use a normalized token's normalized form, as the library does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sq {

class Normalizer;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  // The string used for decoding and id_to_token: normalizer(content) for normalized tokens (so
  // "<s>" reads "▁<s>" under Prepend("▁")), else content. Filled by AddedVocabulary. The library
  // caches the same normalized form so that the decoder chain can invert it.
  std::string surface;
};

// A span of text: an added token (id >= 0) or text still to be tokenized (id == -1).
struct TextSpan {
  size_t start;
  size_t end;
  int32_t id;
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) produces the patterns of normalized tokens; it is not retained.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits raw text on the normalized=false tokens.
  std::vector<TextSpan> split_raw(std::string_view text) const { return split(text, raw_); }
  // Splits normalized text on the normalized=true tokens.
  std::vector<TextSpan> split_normalized(std::string_view text) const {
    return split(text, normalized_);
  }

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // The added token with this id, or nullptr.
  const AddedToken* find_id(int32_t id) const;
  const AddedToken* find_content(std::string_view content) const;

 private:
  // Byte trie over the patterns; node 0 is the root.
  struct Trie {
    std::vector<std::unordered_map<unsigned char, int32_t>> next;
    std::vector<int32_t> token;  // index into tokens_ of the pattern ending here, or -1
    Trie() : next(1), token(1, -1) {}
    void insert(std::string_view pattern, int32_t token_index);
    // Length of the longest pattern starting at text[pos], with its token index; 0 if none.
    size_t longest_at(std::string_view text, size_t pos, int32_t* token_index) const;
  };
  std::vector<TextSpan> split(std::string_view text, const Trie& trie) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Trie raw_;
  Trie normalized_;
};

}  // namespace sq
