// UTF-8 and Unicode helpers shared by the tokenizer stages. Everything works on UTF-8 byte strings;
// the tokenizers library works on Rust `str`, so these reproduce its char-level rules (what a char
// is, Rust's is_whitespace / is_alphanumeric, String::from_utf8_lossy) and the GPT-2 byte<->char
// map. Unicode normalization forms come from libutf8proc.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sq::unicode {

// Length in bytes of the UTF-8 sequence starting at s[i] in a string known to be valid UTF-8.
size_t char_len(std::string_view s, size_t i);
// Decodes the code point at s[i] of valid UTF-8; stores its byte length in *len.
char32_t decode_at(std::string_view s, size_t i, size_t* len);
void append_utf8(std::string& out, char32_t cp);

bool is_valid_utf8(std::string_view s);
// Rust String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Rust char::is_whitespace (Unicode White_Space property).
bool is_whitespace(char32_t cp);
// Rust char::is_alphanumeric (Alphabetic or Numeric general categories).
bool is_alphanumeric(char32_t cp);

// Unicode normalization forms (utf8proc); input must be valid UTF-8.
enum class NormForm { kNfc, kNfd, kNfkc, kNfkd };
std::string normalize(std::string_view s, NormForm form);
// Full Unicode lowercase mapping, char by char (as Rust str::to_lowercase without final-sigma).
std::string to_lower(std::string_view s);
// Removes combining marks (general category Mn), as the tokenizers StripAccents normalizer.
std::string strip_accents(std::string_view s);

// GPT-2's reversible map from the 256 byte values to printable code points, and its inverse
// (kNoByte where a code point is not in the image).
const std::array<std::string, 256>& byte_to_utf8();
inline constexpr int kNoByte = -1;
int utf8_char_to_byte(char32_t cp);

}  // namespace sq::unicode
