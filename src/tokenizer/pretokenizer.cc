#include "tokenizer/pretokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

using nlohmann::json;

// GPT-2's split pattern, used by ByteLevel(use_regex=true).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  fail("{}: unknown split behavior {:?}", where, name);
}

struct Segment {
  size_t start;
  size_t end;
  bool is_match;
};

// Splits `piece` at the matches of `regex` the way the library's NormalizedString::split does:
// segments alternate between gaps and matches, `invert` swaps the two, `behavior` decides what
// happens to the matched delimiters, and empty results are dropped.
void split_by(const Regex& regex, Behavior behavior, bool invert, Piece piece,
              std::vector<Piece>& out) {
  const std::string& s = piece.text;
  std::vector<Segment> segs;
  size_t prev = 0;
  for (const auto& [start, end] : regex.find_all(s)) {
    if (start != prev) segs.push_back({prev, start, invert});
    segs.push_back({start, end, !invert});
    prev = end;
  }
  if (prev != s.size()) segs.push_back({prev, s.size(), invert});

  std::vector<Segment> kept;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& g : segs) {
        if (!g.is_match) kept.push_back(g);
      }
      break;
    case Behavior::kIsolated:
      kept = std::move(segs);
      break;
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& g : segs) {
        if (g.is_match && !previous_match && !kept.empty()) {
          kept.back().end = g.end;
        } else {
          kept.push_back(g);
        }
        previous_match = g.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().start = it->start;
        } else {
          kept.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
    case Behavior::kContiguous: {
      bool previous_match = false;
      for (const auto& g : segs) {
        if (g.is_match == previous_match && !kept.empty()) {
          kept.back().end = g.end;
        } else {
          kept.push_back(g);
        }
        previous_match = g.is_match;
      }
      break;
    }
  }
  for (const auto& g : kept) {
    if (g.end > g.start)
      out.push_back({s.substr(g.start, g.end - g.start), piece.at_start && g.start == 0});
  }
}

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void split_one(Piece piece, std::vector<Piece>& out) const override {
    std::vector<Piece> pieces{std::move(piece)};
    for (const auto& p : parts_) p->split(pieces);
    for (auto& p : pieces) out.push_back(std::move(p));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& pattern, bool literal, Behavior behavior, bool invert,
                    const std::string& where)
      : regex_(pattern, literal, where), behavior_(behavior), invert_(invert) {}
  void split_one(Piece piece, std::vector<Piece>& out) const override {
    split_by(regex_, behavior_, invert_, std::move(piece), out);
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, false, where);
  }
  void split_one(Piece piece, std::vector<Piece>& out) const override {
    if (add_prefix_space_ && !piece.text.starts_with(' ')) piece.text.insert(0, 1, ' ');
    const size_t first = out.size();
    if (regex_) {
      split_by(*regex_, Behavior::kIsolated, false, std::move(piece), out);
    } else if (!piece.text.empty()) {
      out.push_back(std::move(piece));
    }
    // Every byte becomes one printable char, so the BPE vocabulary never sees raw bytes.
    const auto& map = unicode::byte_to_utf8();
    for (size_t i = first; i < out.size(); ++i) {
      std::string mapped;
      mapped.reserve(out[i].text.size() * 2);
      for (unsigned char c : out[i].text) mapped += map[c];
      out[i].text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split,
                        const std::string& where)
      : replacement_(std::move(replacement)),
        prepend_(prepend),
        split_(split),
        space_(" ", true, where),
        delimiter_(replacement_, true, where) {}
  void split_one(Piece piece, std::vector<Piece>& out) const override {
    std::string s;
    size_t prev = 0;
    for (const auto& [start, end] : space_.find_all(piece.text)) {
      s.append(piece.text, prev, start - prev);
      s += replacement_;
      prev = end;
    }
    s.append(piece.text, prev, std::string::npos);
    const bool starts = s.starts_with(replacement_);
    if ((prepend_ == Prepend::kAlways && !starts) ||
        (prepend_ == Prepend::kFirst && !starts && piece.at_start)) {
      s.insert(0, replacement_);
    }
    piece.text = std::move(s);
    if (split_) {
      split_by(delimiter_, Behavior::kMergedWithNext, false, std::move(piece), out);
    } else if (!piece.text.empty()) {
      out.push_back(std::move(piece));
    }
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
  Regex space_;
  Regex delimiter_;
};

std::unique_ptr<PreTokenizer> make_metaspace(const json& spec, const std::string& where) {
  std::string replacement = spec.value("replacement", std::string("\xE2\x96\x81"));
  auto prepend = MetaspacePreTokenizer::Prepend::kAlways;
  if (auto it = spec.find("prepend_scheme"); it != spec.end() && !it->is_null()) {
    const auto scheme = it->get<std::string>();
    if (scheme == "first") {
      prepend = MetaspacePreTokenizer::Prepend::kFirst;
    } else if (scheme == "never") {
      prepend = MetaspacePreTokenizer::Prepend::kNever;
    } else {
      SQ_CHECK(scheme == "always", "{}: unknown Metaspace prepend_scheme {:?}", where, scheme);
    }
  } else if (!spec.value("add_prefix_space", true)) {
    prepend = MetaspacePreTokenizer::Prepend::kNever;
  }
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), prepend,
                                                 spec.value("split", true), where);
}

}  // namespace

void PreTokenizer::split(std::vector<Piece>& pieces) const {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& p : pieces) split_one(std::move(p), out);
  pieces = std::move(out);
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  SQ_CHECK(spec.is_object() && spec.contains("type"),
           "{}: pre_tokenizer must be an object with a \"type\"", where);
  const auto type = spec.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& sub : spec.at("pretokenizers")) {
      if (auto p = make_pre_tokenizer(sub, where)) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(spec.value("add_prefix_space", true),
                                                   spec.value("use_regex", true), where);
  }
  if (type == "Split") {
    const json& p = spec.at("pattern");
    const bool literal = p.contains("String");
    SQ_CHECK(literal || p.contains("Regex"), "{}: Split pattern {} must be String or Regex", where,
             p.dump());
    const auto pattern = (literal ? p.at("String") : p.at("Regex")).get<std::string>();
    return std::make_unique<SplitPreTokenizer>(
        pattern, literal, parse_behavior(spec.at("behavior").get<std::string>(), where),
        spec.value("invert", false), where);
  }
  if (type == "Metaspace") return make_metaspace(spec, where);
  if (type == "Digits") {
    const bool individual = spec.value("individual_digits", false);
    return std::make_unique<SplitPreTokenizer>(individual ? R"(\p{N})" : R"(\p{N}+)", false,
                                               Behavior::kIsolated, false, where);
  }
  if (type == "Whitespace") {
    return std::make_unique<SplitPreTokenizer>(R"(\w+|[^\w\s]+)", false, Behavior::kRemoved, true,
                                               where);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<SplitPreTokenizer>(R"(\s+)", false, Behavior::kRemoved, false, where);
  }
  if (type == "Punctuation") {
    const auto behavior = parse_behavior(spec.value("behavior", std::string("Isolated")), where);
    return std::make_unique<SplitPreTokenizer>(R"([\p{P}$+<=>^`|~])", false, behavior, false,
                                               where);
  }
  fail(
      "{}: unsupported pre_tokenizer type {:?} (supported: ByteLevel, Split, Metaspace, Digits, "
      "Whitespace, WhitespaceSplit, Punctuation, Sequence)",
      where, type);
}

}  // namespace sq
