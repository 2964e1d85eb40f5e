#include "io/safetensors_writer.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sq {

size_t TensorSpec::nbytes() const {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path,
                                     std::vector<TensorSpec> specs,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), specs_(std::move(specs)), file_(path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& s : specs_) {
    SQ_CHECK(!header.contains(s.name), "internal error: tensor {} written twice", s.name);
    header[s.name] = {{"dtype", std::string(dtype_name(s.dtype))},
                      {"shape", s.shape},
                      {"data_offsets", {offset, offset + s.nbytes()}}};
    offset += s.nbytes();
  }
  total_ = offset;
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // data section starts 8-byte aligned
  const uint64_t len = h.size();
  file_.write(std::span(reinterpret_cast<const std::byte*>(&len), 8));
  file_.write(h);
}

void SafetensorsWriter::write(std::span<const std::byte> bytes) {
  SQ_CHECK(written_ + bytes.size() <= total_, "internal error: {} written past its tensors",
           path_.string());
  file_.write(bytes);
  written_ += bytes.size();
}

void SafetensorsWriter::write_f32(std::span<const float> values) { write(std::as_bytes(values)); }

void SafetensorsWriter::commit() {
  SQ_CHECK(written_ == total_, "internal error: {} has {} of {} data bytes", path_.string(),
           written_, total_);
  file_.commit();
}

TensorBlob make_f32_blob(std::string name, std::vector<int64_t> shape, const float* data) {
  TensorBlob b;
  b.name = std::move(name);
  b.dtype = DType::kF32;
  b.shape = std::move(shape);
  int64_t n = 1;
  for (auto d : b.shape) n *= d;
  b.bytes.resize(static_cast<size_t>(n) * 4);
  if (n > 0) std::memcpy(b.bytes.data(), data, b.bytes.size());
  return b;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorBlob*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorBlob* a, const TensorBlob* b) { return a->name < b->name; });
  std::vector<TensorSpec> specs;
  for (const TensorBlob* t : order) {
    specs.push_back({t->name, t->dtype, t->shape});
    SQ_CHECK(specs.back().nbytes() == t->bytes.size(),
             "internal error: tensor {} has {} bytes for its shape", t->name, t->bytes.size());
  }
  SafetensorsWriter w(path, std::move(specs), metadata);
  for (const TensorBlob* t : order) w.write(t->bytes);
  w.commit();
}

}  // namespace sq
