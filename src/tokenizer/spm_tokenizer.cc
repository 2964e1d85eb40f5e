#include "tokenizer/spm_tokenizer.h"

#include <sentencepiece_processor.h>

#include "core/error.h"

namespace sq {

SpmTokenizer::SpmTokenizer(const std::filesystem::path& model_file,
                           const std::optional<std::string>& bos_name,
                           const std::optional<std::string>& eos_name)
    : where_(model_file.string()), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->Load(where_);
  SQ_CHECK(status.ok(), "{}: cannot load SentencePiece model: {}; re-download the tokenizer files",
           where_, status.ToString());
  if (bos_name) bos_id_ = piece_id(*bos_name);
  if (!bos_id_ && sp_->bos_id() >= 0) bos_id_ = sp_->bos_id();
  if (eos_name) eos_id_ = piece_id(*eos_name);
  if (!eos_id_ && sp_->eos_id() >= 0) eos_id_ = sp_->eos_id();
}

SpmTokenizer::~SpmTokenizer() = default;

std::optional<int32_t> SpmTokenizer::piece_id(const std::string& piece) const {
  const int id = sp_->PieceToId(piece);
  // PieceToId answers unk for unknown pieces; only accept unk when that is what was asked for.
  if (id < 0 || (sp_->IsUnknown(id) && sp_->IdToPiece(id) != piece)) return std::nullopt;
  return id;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  SQ_CHECK(status.ok(), "{}: SentencePiece encoding failed: {}", where_, status.ToString());
  std::vector<int32_t> out;
  out.reserve(ids.size() + 1);
  if (add_special && bos_id_) out.push_back(*bos_id_);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string SpmTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= sp_->GetPieceSize()) continue;  // out of range: skipped, not fatal
    if (skip_special && is_special(id)) continue;
    kept.push_back(id);
  }
  std::string out;
  const auto status = sp_->Decode(kept, &out);
  SQ_CHECK(status.ok(), "{}: SentencePiece decoding failed: {}", where_, status.ToString());
  return out;
}

std::string SpmTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= sp_->GetPieceSize()) return {};
  return sp_->IdToPiece(id);
}

int32_t SpmTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

bool SpmTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= sp_->GetPieceSize()) return false;
  return sp_->IsControl(id) || sp_->IsUnknown(id);
}

}  // namespace sq
