#include "tokenizer/added_tokens.h"

#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

size_t prev_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool is_word_char(char32_t c) { return c == '_' || unicode::is_alphanumeric(c); }

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t len = 0;
  return is_word_char(unicode::decode_at(s, prev_char_start(s, s.size()), &len));
}

bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t len = 0;
  return is_word_char(unicode::decode_at(s, 0, &len));
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    auto it = next[node].find(c);
    if (it == next[node].end()) {
      const auto fresh = static_cast<int32_t>(next.size());
      next[node].emplace(c, fresh);
      next.emplace_back();
      token.push_back(-1);
      node = fresh;
    } else {
      node = it->second;
    }
  }
  // The first token with a given pattern wins, like the lowest pattern id in Aho-Corasick.
  if (token[node] < 0) token[node] = token_index;
}

size_t AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos,
                                         int32_t* token_index) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = next[node].find(static_cast<unsigned char>(text[i]));
    if (it == next[node].end()) break;
    node = it->second;
    if (token[node] >= 0) {
      best = i + 1 - pos;
      *token_index = token[node];
    }
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    AddedToken& t = tokens_[i];
    by_id_.emplace(t.id, i);
    by_content_.emplace(t.content, i);
    if (t.normalized) {
      t.surface = normalizer ? normalizer->normalize(t.content) : t.content;
      normalized_.insert(t.surface, static_cast<int32_t>(i));
    } else {
      t.surface = t.content;
      raw_.insert(t.content, static_cast<int32_t>(i));
    }
  }
}

const AddedToken* AddedVocabulary::find_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<TextSpan> AddedVocabulary::split(std::string_view text, const Trie& trie) const {
  std::vector<TextSpan> spans;
  size_t done = 0;  // end of the last emitted span
  for (size_t pos = 0; pos < text.size();) {
    int32_t index = -1;
    const size_t len = trie.longest_at(text, pos, &index);
    if (len == 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[index];
    size_t start = pos;
    size_t stop = pos + len;
    if (tok.single_word &&
        (ends_with_word(text.substr(0, start)) || starts_with_word(text.substr(stop)))) {
      pos = stop;  // the rejected match still consumes its text, as in the library's find_iter
      continue;
    }
    if (tok.lstrip) {
      // Swallow the whitespace before the token, but not what an earlier span already owns.
      size_t s = start;
      while (s > done) {
        const size_t p = prev_char_start(text, s);
        size_t clen = 0;
        if (!unicode::is_whitespace(unicode::decode_at(text, p, &clen))) break;
        s = p;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t clen = 0;
        if (!unicode::is_whitespace(unicode::decode_at(text, stop, &clen))) break;
        stop += clen;
      }
    }
    if (done < start) spans.push_back({done, start, -1});
    spans.push_back({start, stop, tok.id});
    done = stop;
    pos = stop;
  }
  if (done < text.size()) spans.push_back({done, text.size(), -1});
  return spans;
}

}  // namespace sq
