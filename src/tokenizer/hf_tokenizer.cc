#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

using nlohmann::json;

std::vector<AddedToken> parse_added_tokens(const json& root, const std::string& where) {
  std::vector<AddedToken> tokens;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return tokens;
  SQ_CHECK(it->is_array(), "{}: \"added_tokens\" must be an array", where);
  for (const auto& t : *it) {
    AddedToken a;
    a.id = t.at("id").get<int32_t>();
    SQ_CHECK(a.id >= 0, "{}: added token id {} is negative", where, a.id);
    a.content = t.at("content").get<std::string>();
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.normalized = t.value("normalized", true);
    a.special = t.value("special", false);
    tokens.push_back(std::move(a));
  }
  return tokens;
}

}  // namespace

HfTokenizer::HfTokenizer(const json& root, const std::string& where,
                         const std::optional<std::string>& bos_name,
                         const std::optional<std::string>& eos_name) {
  SQ_CHECK(root.is_object(), "{}: top level must be a JSON object; re-download the tokenizer files",
           where);
  auto model = root.find("model");
  SQ_CHECK(model != root.end() && model->is_object(),
           "{}: no \"model\" object; re-download the tokenizer files", where);
  std::string type;
  if (auto t = model->find("type"); t != model->end() && !t->is_null()) {
    type = t->get<std::string>();
  } else if (model->contains("merges")) {
    type = "BPE";  // old files omit the tag; merges identify BPE
  }
  SQ_CHECK(type == "BPE",
           "{}: unsupported model type {:?}; only BPE tokenizers (GPT-2/Llama/Qwen style) are "
           "supported",
           where, type.empty() ? "(none)" : type);

  auto field = [&root](const char* key) -> const json& {
    static const json kNull;
    auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  normalizer_ = make_normalizer(field("normalizer"), where);
  pre_tokenizer_ = make_pre_tokenizer(field("pre_tokenizer"), where);
  model_ = std::make_unique<BpeModel>(*model, where);
  decoder_ = make_decoder(field("decoder"), where);
  added_ = std::make_unique<AddedVocabulary>(parse_added_tokens(root, where), normalizer_.get());
  parse_post_processor(field("post_processor"), where);

  vocab_size_ = model_->max_id() + 1;
  for (const auto& t : added_->tokens()) vocab_size_ = std::max(vocab_size_, t.id + 1);

  if (bos_name) bos_id_ = token_to_id(*bos_name);
  if (!bos_id_ && !special_prefix_.empty()) bos_id_ = special_prefix_.front();
  if (eos_name) eos_id_ = token_to_id(*eos_name);
}

void HfTokenizer::parse_post_processor(const json& spec, const std::string& where) {
  if (spec.is_null()) return;
  SQ_CHECK(spec.is_object() && spec.contains("type"),
           "{}: post_processor must be an object with a \"type\"", where);
  const auto type = spec.at("type").get<std::string>();
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    for (const auto& sub : spec.at("processors")) parse_post_processor(sub, where);
    return;
  }
  if (type == "TemplateProcessing") {
    const json& specials = spec.at("special_tokens");
    bool seen_sequence = false;
    for (const auto& item : spec.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      SQ_CHECK(item.contains("SpecialToken"),
               "{}: template item {} is neither Sequence nor "
               "SpecialToken",
               where, item.dump());
      const auto name = item.at("SpecialToken").at("id").get<std::string>();
      SQ_CHECK(specials.contains(name),
               "{}: template uses special token {:?} missing from "
               "special_tokens",
               where, name);
      auto& dst = seen_sequence ? special_suffix_ : special_prefix_;
      for (const auto& id : specials.at(name).at("ids")) dst.push_back(id.get<int32_t>());
    }
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    // {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}: single sequence is CLS A SEP.
    special_prefix_.push_back(spec.at("cls").at(1).get<int32_t>());
    special_suffix_.insert(special_suffix_.begin(), spec.at("sep").at(1).get<int32_t>());
    return;
  }
  fail(
      "{}: unsupported post_processor type {:?} (supported: TemplateProcessing, ByteLevel, "
      "BertProcessing, RobertaProcessing, Sequence)",
      where, type);
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* a = added_->find_content(token)) return a->id;
  return model_->token_to_id(token);
}

void HfTokenizer::tokenize_normalized(std::string_view text, bool at_start,
                                      std::vector<int32_t>& out) const {
  for (const TextSpan& span : added_->split_normalized(text)) {
    if (span.id >= 0) {
      out.push_back(span.id);
      continue;
    }
    std::vector<Piece> pieces;
    pieces.push_back(
        {std::string(text.substr(span.start, span.end - span.start)), at_start && span.start == 0});
    if (pre_tokenizer_) pre_tokenizer_->split(pieces);
    for (const Piece& p : pieces) model_->tokenize(p.text, out);
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
  // Python strings are always valid Unicode; invalid bytes are read the way Python's
  // bytes.decode(errors="replace") would, so every later stage can assume valid UTF-8.
  std::string lossy;
  if (!unicode::is_valid_utf8(text)) {
    lossy = unicode::utf8_lossy(text);
    text = lossy;
  }
  std::vector<int32_t> ids;
  if (add_special) ids = special_prefix_;
  for (const TextSpan& span : added_->split_raw(text)) {
    if (span.id >= 0) {
      ids.push_back(span.id);
      continue;
    }
    std::string piece(text.substr(span.start, span.end - span.start));
    if (normalizer_) piece = normalizer_->normalize(std::move(piece));
    tokenize_normalized(piece, span.start == 0, ids);
  }
  if (add_special) ids.insert(ids.end(), special_suffix_.begin(), special_suffix_.end());
  return ids;
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const AddedToken* a = added_->find_id(id)) {
      if (!(skip_special && a->special)) tokens.push_back(a->surface);
    } else if (const std::string* t = model_->id_to_token(id)) {
      tokens.push_back(*t);
    }
    // Ids outside the vocabulary are skipped, as the library does.
  }
  if (decoder_) return decoder_->decode(std::move(tokens));
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ' ';
    out += tokens[i];
  }
  return out;
}

std::string HfTokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* a = added_->find_id(id)) return a->surface;
  if (const std::string* t = model_->id_to_token(id)) return *t;
  return {};
}

bool HfTokenizer::is_special(int32_t id) const {
  const AddedToken* a = added_->find_id(id);
  return a != nullptr && a->special;
}

}  // namespace sq
