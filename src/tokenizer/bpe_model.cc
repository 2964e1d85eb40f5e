#include "tokenizer/bpe_model.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sq {
namespace {

using nlohmann::json;

std::optional<std::string> optional_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

bool optional_bool(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  return it->get<bool>();
}

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t len;  // bytes of the original word covered; 0 marks a symbol merged into its left
};

// Heap entry: the pair starting at symbol `pos`, to be merged into `new_id`.
struct PendingMerge {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // std::priority_queue pops the largest: order so that the lowest (rank, pos) is largest.
  bool operator<(const PendingMerge& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

BpeModel::BpeModel(const json& model, const std::string& where) {
  if (auto dropout = model.find("dropout"); dropout != model.end() && !dropout->is_null()) {
    SQ_CHECK(dropout->get<double>() == 0.0,
             "{}: BPE dropout {} is not supported (it makes encoding random); remove it", where,
             dropout->get<double>());
  }
  unk_token_ = optional_string(model, "unk_token");
  continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix").value_or("");
  end_of_word_suffix_ = optional_string(model, "end_of_word_suffix").value_or("");
  fuse_unk_ = optional_bool(model, "fuse_unk", false);
  byte_fallback_ = optional_bool(model, "byte_fallback", false);
  ignore_merges_ = optional_bool(model, "ignore_merges", false);

  const auto vocab = model.find("vocab");
  SQ_CHECK(vocab != model.end() && vocab->is_object(), "{}: BPE model has no \"vocab\" object",
           where);
  vocab_.reserve(vocab->size());
  for (const auto& [token, id_json] : vocab->items()) {
    const auto id = id_json.get<int64_t>();
    SQ_CHECK(id >= 0 && id < (int64_t{1} << 30), "{}: vocab id {} of {:?} is out of range", where,
             id, token);
    vocab_[token] = static_cast<int32_t>(id);
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
      has_id_.resize(id + 1, false);
    }
    id_to_token_[id] = token;
    has_id_[id] = true;
  }

  const auto merges = model.find("merges");
  if (merges != model.end() && !merges->is_null()) {
    SQ_CHECK(merges->is_array(), "{}: BPE \"merges\" must be an array", where);
    merges_.reserve(merges->size());
    int32_t rank = 0;
    for (const auto& m : *merges) {
      std::string a, b;
      if (m.is_string()) {
        // "a b": exactly one space, as the tokenizers library requires.
        const auto& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        SQ_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                 "{}: merge #{} {:?} is not of the form \"a b\"", where, rank, s);
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        SQ_CHECK(m.is_array() && m.size() == 2, "{}: merge #{} must be \"a b\" or [\"a\", \"b\"]",
                 where, rank);
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      }
      const auto ia = token_to_id(a);
      const auto ib = token_to_id(b);
      SQ_CHECK(ia && ib, "{}: merge #{} uses {:?} which is not in the vocab", where, rank,
               ia ? b : a);
      // The merged token drops the right part's continuing-subword prefix ("##").
      const size_t plen = continuing_subword_prefix_.size();
      const std::string merged = a + (plen > 0 && b.size() >= plen ? b.substr(plen) : b);
      const auto inew = token_to_id(merged);
      SQ_CHECK(inew.has_value(), "{}: merge #{} produces {:?} which is not in the vocab", where,
               rank, merged);
      // Later duplicates overwrite earlier ones, as when the library collects its merge map.
      merges_[pair_key(*ia, *ib)] = MergeInfo{rank, *inew};
      ++rank;
    }
  }

  for (int b = 0; b < 256; ++b) {
    const auto id = token_to_id(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = id ? *id : -1;
  }
  if (unk_token_) {
    SQ_CHECK(token_to_id(*unk_token_).has_value(), "{}: unk_token {:?} is not in the vocab", where,
             *unk_token_);
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

const BpeModel::MergeInfo* BpeModel::find_merge(int32_t a, int32_t b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, int32_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back(Symbol{id, n - 1, -1, len});
  };

  // A pending unk is only emitted once a known char follows (or at the end), so that runs of
  // unknown chars can fuse; byte-fallback chars do not flush it, exactly like the library.
  int32_t unk_id = -1;  // pending unk (-1: none) and the bytes it covers
  int32_t unk_len = 0;
  std::string piece;
  for (size_t i = 0; i < word.size();) {
    const size_t n = unicode::char_len(word, i);
    const bool is_first = i == 0;
    const bool is_last = i + n >= word.size();
    piece.assign(word.substr(i, n));
    if (!is_first) piece.insert(0, continuing_subword_prefix_);
    if (is_last) piece += end_of_word_suffix_;
    const auto byte_len = static_cast<int32_t>(n);
    i += n;

    if (auto id = token_to_id(piece)) {
      if (unk_id >= 0) {
        add(unk_id, unk_len);
        unk_id = -1;
      }
      add(*id, byte_len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : piece) add(byte_ids_[c], 1);
        continue;
      }
    }
    if (unk_token_) {
      if (unk_id >= 0 && fuse_unk_) {
        unk_len += byte_len;
      } else {
        if (unk_id >= 0) add(unk_id, unk_len);
        unk_id = *token_to_id(*unk_token_);
        unk_len = byte_len;
      }
    }
    // Without an unk token the char is dropped, as in the library.
  }
  if (unk_id >= 0) add(unk_id, unk_len);

  std::priority_queue<PendingMerge> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeInfo* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push(PendingMerge{m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const PendingMerge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    // Entries go stale when a neighbour merged first; the pair must still produce new_id.
    const MergeInfo* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;

    if (left.prev >= 0) {
      if (const MergeInfo* m = find_merge(symbols[left.prev].id, left.id)) {
        queue.push(PendingMerge{m->rank, left.prev, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = find_merge(left.id, symbols[left.next].id)) {
        queue.push(PendingMerge{m->rank, top.pos, m->new_id});
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) out.push_back(s.id);
  }
}

}  // namespace sq
