#include "quant/calibrate.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "core/progress.h"

namespace sq {
namespace {

bool is_py_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

std::string strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && is_py_space(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text, const std::string& separator,
                                         bool separator_given, std::string* used) {
  std::string sep = separator;
  if (!separator_given) {
    sep = text.find("<|endoftext|>") != std::string::npos ? "<|endoftext|>" : "\n\n";
  }
  SQ_CHECK(!sep.empty(), "--separator must not be empty");
  if (separator_given) {
    SQ_CHECK(text.find(sep) != std::string::npos,
             "--separator '{}' never occurs in the calibration text; pass the string that "
             "separates documents, or omit --separator",
             sep);
  }
  if (used) *used = sep;
  std::vector<std::string> docs;
  size_t pos = 0;
  for (;;) {
    const size_t next = text.find(sep, pos);
    std::string d = strip(std::string_view(text).substr(
        pos, next == std::string::npos ? std::string::npos : next - pos));
    if (!d.empty()) docs.push_back(std::move(d));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  return docs;
}

CalibSet make_calib_set(const std::string& text, const Tokenizer& tok, const CalibOptions& opt,
                        const std::string& source) {
  SQ_CHECK(opt.samples > 0, "--samples must be positive");
  SQ_CHECK(opt.seq_len > 0, "--seq-len must be positive");
  CalibSet set;
  auto docs = split_documents(text, opt.separator, !opt.separator.empty(), &set.separator);
  SQ_CHECK(!docs.empty(), "{}: the calibration text holds no non-empty document", source);
  if (opt.shuffle) {
    std::mt19937_64 rng(opt.seed);
    std::shuffle(docs.begin(), docs.end(), rng);
  }
  const size_t n = std::min<size_t>(docs.size(), static_cast<size_t>(opt.samples));
  for (size_t i = 0; i < n; ++i) {
    auto ids = tok.encode(docs[i]);
    if (static_cast<int64_t>(ids.size()) > opt.seq_len)
      ids.resize(static_cast<size_t>(opt.seq_len));
    if (ids.empty()) continue;
    set.tokens += static_cast<int64_t>(ids.size());
    set.docs.push_back(std::move(ids));
  }
  SQ_CHECK(!set.docs.empty(), "{}: the calibration documents produced no tokens", source);
  return set;
}

int64_t longest_document(const CalibSet& set, const ModelConfig& cfg) {
  int64_t longest = 0;
  for (const auto& d : set.docs)
    longest = std::max<int64_t>(longest, static_cast<int64_t>(d.size()));
  SQ_CHECK(longest <= cfg.max_positions,
           "--seq-len {} exceeds the model's {} positions; use a smaller --seq-len", longest,
           cfg.max_positions);
  return longest;
}

ActStats calibrate(const Model& model, const CalibSet& set, ForwardOptions fwd) {
  ActStats stats;
  StatsObserver obs(stats);
  fwd.observer = &obs;
  const int64_t longest = longest_document(set, model.config());
  KvCache cache(model.config(), longest);
  std::vector<float> logits;
  Progress progress("calibrate", set.tokens, "tokens");
  for (const auto& d : set.docs) {
    cache.clear();
    model.forward(d, cache, logits, fwd);
    progress.add(static_cast<int64_t>(d.size()));
  }
  progress.done();
  stats.info.documents = static_cast<int64_t>(set.docs.size());
  stats.info.tokens = set.tokens;
  stats.info.separator = set.separator;
  return stats;
}

}  // namespace sq
