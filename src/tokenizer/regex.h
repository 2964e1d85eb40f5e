// A compiled PCRE2 pattern (UTF + UCP, JIT when available) that lists all non-overlapping matches
// of a valid UTF-8 string. The tokenizers library uses Oniguruma; for the split patterns of GPT-2,
// Llama-3 and Qwen2 (\p{L}, \p{N}, \s, lookahead, case-insensitive groups) PCRE2 with Unicode
// properties matches the same spans. Callers must pass valid UTF-8 (the tokenizer sanitizes its
// input once), so per-call UTF checks are skipped to keep repeated matching linear.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sq {

class Regex {
 public:
  // `literal` compiles `pattern` as a plain string. Throws sq::Error mentioning `where`.
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte spans [start, end) of the non-empty, non-overlapping matches, left to right.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so users need no PCRE2 headers
};

}  // namespace sq
