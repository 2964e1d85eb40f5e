#include "tokenizer/normalizer.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

using nlohmann::json;

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string normalize(std::string s) const override {
    for (const auto& p : parts_) s = p->normalize(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  // Empty pieces stay empty: "" must not become "▁" (the library checks is_empty first).
  std::string normalize(std::string s) const override { return s.empty() ? s : prefix_ + s; }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(const std::string& pattern, bool literal, std::string content,
                    const std::string& where)
      : regex_(pattern, literal, where), content_(std::move(content)) {}
  std::string normalize(std::string s) const override {
    const auto matches = regex_.find_all(s);
    if (matches.empty()) return s;
    std::string out;
    out.reserve(s.size() + matches.size() * content_.size());
    size_t prev = 0;
    for (const auto& [start, end] : matches) {
      out.append(s, prev, start - prev);
      out += content_;
      prev = end;
    }
    out.append(s, prev, std::string::npos);
    return out;
  }

 private:
  Regex regex_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::NormForm form) : form_(form) {}
  std::string normalize(std::string s) const override { return unicode::normalize(s, form_); }

 private:
  unicode::NormForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  std::string normalize(std::string s) const override { return unicode::to_lower(s); }
};

class StripAccentsNormalizer final : public Normalizer {
 public:
  std::string normalize(std::string s) const override { return unicode::strip_accents(s); }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string s) const override {
    size_t begin = 0;
    size_t end = s.size();
    if (left_) {
      while (begin < end) {
        size_t len = 0;
        if (!unicode::is_whitespace(unicode::decode_at(s, begin, &len))) break;
        begin += len;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t len = 0;
        if (!unicode::is_whitespace(unicode::decode_at(s, start, &len))) break;
        end = start;
      }
    }
    return s.substr(begin, end - begin);
  }

 private:
  bool left_;
  bool right_;
};

// {"String": "x"} or {"Regex": "x"} -> (pattern, literal).
std::pair<std::string, bool> parse_pattern(const json& p, const std::string& where) {
  if (p.contains("String")) return {p.at("String").get<std::string>(), true};
  if (p.contains("Regex")) return {p.at("Regex").get<std::string>(), false};
  fail("{}: pattern {} must be {{\"String\": ...}} or {{\"Regex\": ...}}", where, p.dump());
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  SQ_CHECK(spec.is_object() && spec.contains("type"),
           "{}: normalizer must be an object with a \"type\"", where);
  const auto type = spec.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& sub : spec.at("normalizers")) {
      if (auto n = make_normalizer(sub, where)) parts.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(spec.at("prepend").get<std::string>());
  if (type == "Replace") {
    auto [pattern, literal] = parse_pattern(spec.at("pattern"), where);
    return std::make_unique<ReplaceNormalizer>(pattern, literal,
                                               spec.at("content").get<std::string>(), where);
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(unicode::NormForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(unicode::NormForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(unicode::NormForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(unicode::NormForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(spec.value("strip_left", true),
                                             spec.value("strip_right", true));
  }
  fail(
      "{}: unsupported normalizer type {:?} (supported: Sequence, Prepend, Replace, NFC, NFD, "
      "NFKC, NFKD, Lowercase, Strip, StripAccents)",
      where, type);
}

}  // namespace sq
