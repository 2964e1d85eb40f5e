#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sq {
namespace {

using json = nlohmann::json;

// Limits a header to something sane before parsing it; real headers are a few hundred KiB.
constexpr uint64_t kMaxHeaderBytes = 512ull << 20;

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (int64_t d : shape) {
    SQ_CHECK(d >= 0, "{}: negative dimension in shape", where);
    SQ_CHECK(d == 0 || n <= INT64_MAX / d, "{}: shape overflows", where);
    n *= d;
  }
  return n;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> TensorView::to_f32() const {
  SQ_CHECK(is_float(dtype), "tensor {} has dtype {}, expected a floating type", name,
           dtype_name(dtype));
  std::vector<float> out(static_cast<size_t>(numel()));
  sq::to_f32(dtype, data, out.data(), out.size());
  return out;
}

std::vector<int32_t> TensorView::to_i32() const {
  std::vector<int32_t> out(static_cast<size_t>(numel()));
  if (dtype == DType::kI32) {
    std::memcpy(out.data(), data, out.size() * 4);
  } else if (dtype == DType::kI64) {
    for (size_t i = 0; i < out.size(); ++i) {
      int64_t v;
      std::memcpy(&v, data + 8 * i, 8);
      SQ_CHECK(v >= INT32_MIN && v <= INT32_MAX, "tensor {}: value {} does not fit in int32", name,
               v);
      out[i] = static_cast<int32_t>(v);
    }
  } else {
    fail("tensor {} has dtype {}, expected I32 or I64", name, dtype_name(dtype));
  }
  return out;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile st;
  st.path_ = path;
  auto file = MappedFile::open(path);
  const auto bytes = file->bytes();
  const std::string where = path.string();
  SQ_CHECK(bytes.size() >= 8,
           "{}: truncated safetensors file ({} bytes; a valid file starts with an 8-byte header "
           "length)",
           where, bytes.size());
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  SQ_CHECK(header_len <= bytes.size() - 8 && header_len <= kMaxHeaderBytes,
           "{}: header length {} goes beyond the end of the file ({} bytes); the file is truncated "
           "or not safetensors",
           where, header_len, bytes.size());
  const char* hdr = reinterpret_cast<const char*>(bytes.data() + 8);
  json j;
  try {
    j = json::parse(hdr, hdr + header_len);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON header: {}", where, e.what());
  }
  SQ_CHECK(j.is_object(), "{}: header is not a JSON object", where);

  const std::byte* data = bytes.data() + 8 + header_len;
  const uint64_t data_size = bytes.size() - 8 - header_len;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      SQ_CHECK(v.is_object(), "{}: __metadata__ is not an object", where);
      for (auto m = v.begin(); m != v.end(); ++m) {
        SQ_CHECK(m.value().is_string(), "{}: __metadata__ value for '{}' is not a string", where,
                 m.key());
        st.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = fmt::format("{}: tensor '{}'", where, name);
    SQ_CHECK(
        v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
        "{}: entry must have dtype, shape and data_offsets", tw);
    SQ_CHECK(v["dtype"].is_string(), "{}: dtype is not a string", tw);
    const auto dt = dtype_from_name(v["dtype"].get<std::string>());
    SQ_CHECK(dt.has_value(),
             "{}: unknown dtype '{}' (supported: F32 F16 BF16 F64 I8 U8 I32 I64 BOOL)", tw,
             v["dtype"].get<std::string>());
    const json& shape = v["shape"];
    SQ_CHECK(shape.is_array(), "{}: shape is not an array", tw);
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    for (const json& d : shape) {
      SQ_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0,
               "{}: shape must hold non-negative integers", tw);
      t.shape.push_back(d.get<int64_t>());
    }
    const json& off = v["data_offsets"];
    SQ_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                 off[1].is_number_unsigned(),
             "{}: data_offsets must be two non-negative integers", tw);
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    SQ_CHECK(b <= e && e <= data_size,
             "{}: data_offsets [{}, {}] lie outside the data section ({} bytes); the file is "
             "truncated or corrupt",
             tw, b, e, data_size);
    const int64_t numel = checked_numel(t.shape, tw);
    const uint64_t expect = static_cast<uint64_t>(numel) * dtype_size(t.dtype);
    SQ_CHECK(expect == e - b,
             "{}: shape {} x {} needs {} bytes but data_offsets span {} bytes (dtype/shape "
             "mismatch)",
             tw, fmt::join(t.shape, "x"), dtype_name(t.dtype), expect, e - b);
    t.data = data + b;
    t.nbytes = e - b;
    t.file = file;
    auto [pos, inserted] = st.tensors_.emplace(name, std::move(t));
    spans.push_back({b, e, &pos->first});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < spans.size(); ++i) {
    // Zero-sized tensors occupy no bytes and cannot overlap anything.
    if (spans[i].begin == spans[i].end) continue;
    SQ_CHECK(spans[i].begin >= spans[i - 1].end,
             "{}: tensors '{}' and '{}' overlap in the data section; the file is corrupt", where,
             *spans[i - 1].name, *spans[i].name);
  }
  return st;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  SQ_CHECK(t != nullptr, "missing tensor '{}' in {}", name, path_.string());
  return *t;
}

Checkpoint Checkpoint::open_dir(const std::filesystem::path& dir) {
  Checkpoint c;
  c.dir_ = dir;
  SQ_CHECK(std::filesystem::is_directory(dir),
           "{} is not a directory (expected a Hugging Face model directory with config.json and "
           "*.safetensors)",
           dir.string());
  const auto index_path = dir / "model.safetensors.index.json";
  const auto single = dir / "model.safetensors";
  if (std::filesystem::exists(index_path)) {
    json j;
    try {
      j = json::parse(read_text_file(index_path));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", index_path.string(), e.what());
    }
    SQ_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
             "{}: missing \"weight_map\" object", index_path.string());
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      SQ_CHECK(it.value().is_string(), "{}: weight_map entry '{}' is not a file name",
               index_path.string(), it.key());
      const std::string shard = it.value().get<std::string>();
      SQ_CHECK(shard.find('/') == std::string::npos && shard != ".." && !shard.empty(),
               "{}: shard name '{}' must be a plain file name", index_path.string(), shard);
      by_shard[shard].push_back(it.key());
    }
    c.files_->reserve(by_shard.size());
    for (const auto& [shard, names] : by_shard) {
      c.files_->push_back(SafetensorsFile::open(dir / shard));
      const SafetensorsFile& f = c.files_->back();
      for (const auto& n : names) {
        const TensorView* t = f.find(n);
        SQ_CHECK(t != nullptr, "{}: tensor '{}' is listed for {} but that shard does not hold it",
                 index_path.string(), n, shard);
        c.index_[n] = t;
      }
    }
  } else if (std::filesystem::exists(single)) {
    c.files_->push_back(SafetensorsFile::open(single));
    for (const auto& [n, t] : c.files_->back().tensors()) c.index_[n] = &t;
  } else {
    fail(
        "no model.safetensors or model.safetensors.index.json in {} (only safetensors checkpoints "
        "are supported; convert .bin files with transformers' save_pretrained)",
        dir.string());
  }
  return c;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  SQ_CHECK(t != nullptr, "missing tensor '{}' in checkpoint {}", name, dir_.string());
  return *t;
}

std::map<std::string, std::string> Checkpoint::metadata() const {
  std::map<std::string, std::string> m;
  for (const auto& f : *files_) m.insert(f.metadata().begin(), f.metadata().end());
  return m;
}

}  // namespace sq
