#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

using nlohmann::json;

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(const std::string& pattern, bool literal, std::string content,
                 const std::string& where)
      : regex_(pattern, literal, where), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      const auto matches = regex_.find_all(t);
      if (matches.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [start, end] : matches) {
        out.append(t, prev, start - prev);
        out += content_;
        prev = end;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Regex regex_;
  std::string content_;
};

// Runs of "<0xNN>" tokens become their bytes when those form valid UTF-8, else one U+FFFD each.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string bytes;
    size_t n_bytes = 0;
    auto flush = [&] {
      if (n_bytes == 0) return;
      if (unicode::is_valid_utf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < n_bytes; ++i) out.emplace_back(kReplacementChar);
      }
      bytes.clear();
      n_bytes = 0;
    };
    for (auto& t : tokens) {
      int value = -1;
      if (t.size() == 6 && t.starts_with("<0x") && t.ends_with('>')) value = parse_hex(t[3], t[4]);
      if (value >= 0) {
        bytes += static_cast<char>(value);
        ++n_bytes;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int parse_hex(char hi, char lo) {
    const int h = hex_digit(hi);
    const int l = hex_digit(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of the char `content` from each string.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (auto& t : tokens) {
      size_t begin = 0;
      for (size_t i = 0; i < start_ && t.compare(begin, content_.size(), content_) == 0; ++i) {
        begin += content_.size();
      }
      size_t end = t.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_;
  size_t stop_;
};

// Maps each char back to its byte (a token with any char outside the map keeps its own UTF-8
// bytes) and reads the joined bytes as lossy UTF-8.
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok;) {
        size_t len = 0;
        const int b = unicode::utf8_char_to_byte(unicode::decode_at(t, i, &len));
        ok = b != unicode::kNoByte;
        mapped += static_cast<char>(b);
        i += len;
      }
      bytes += ok ? mapped : t;
    }
    tokens.assign(1, unicode::utf8_lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepend)
      : replacement_(std::move(replacement)), prepend_(prepend) {}
  // Every replacement char becomes a space, except in the first token where, when a prefix was
  // prepended at encoding time, the library drops them all.
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (replacement_.empty()) return;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string with = (i == 0 && prepend_) ? "" : " ";
      std::string out;
      const std::string& t = tokens[i];
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          out += with;
          pos += replacement_.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool prepend_;
};

}  // namespace

std::string Decoder::decode(std::vector<std::string> tokens) const {
  decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::unique_ptr<Decoder> make_decoder(const json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  SQ_CHECK(spec.is_object() && spec.contains("type"),
           "{}: decoder must be an object with a \"type\"", where);
  const auto type = spec.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& sub : spec.at("decoders")) {
      if (auto d = make_decoder(sub, where)) parts.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "Replace") {
    const json& p = spec.at("pattern");
    const bool literal = p.contains("String");
    SQ_CHECK(literal || p.contains("Regex"), "{}: Replace pattern {} must be String or Regex",
             where, p.dump());
    return std::make_unique<ReplaceDecoder>(
        (literal ? p.at("String") : p.at("Regex")).get<std::string>(), literal,
        spec.at("content").get<std::string>(), where);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(spec.at("content").get<std::string>(),
                                          spec.value("start", size_t{0}),
                                          spec.value("stop", size_t{0}));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool prepend = spec.value("add_prefix_space", true);
    if (auto it = spec.find("prepend_scheme"); it != spec.end() && !it->is_null()) {
      prepend = it->get<std::string>() != "never";
    }
    return std::make_unique<MetaspaceDecoder>(
        spec.value("replacement", std::string("\xE2\x96\x81")), prepend);
  }
  fail(
      "{}: unsupported decoder type {:?} (supported: Sequence, Replace, ByteFallback, Fuse, "
      "Strip, ByteLevel, Metaspace)",
      where, type);
}

}  // namespace sq
