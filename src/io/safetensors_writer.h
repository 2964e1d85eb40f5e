// Writing safetensors atomically. SafetensorsWriter streams: the header (names, dtypes, shapes) is
// fixed up front, then each tensor's bytes are appended in header order, so a multi-GB checkpoint
// or a [windows, ctx, vocab] logits file never has to sit in memory. Nothing appears at the
// destination path until commit() has checked that every byte was written.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/atomic_file.h"

namespace sq {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};

class SafetensorsWriter {
 public:
  // Tensors are laid out in the order given (no holes, as the format requires).
  SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorSpec> specs,
                    const std::map<std::string, std::string>& metadata = {});
  // Appends bytes of the current tensor; tensors advance automatically when one is complete.
  void write(std::span<const std::byte> bytes);
  void write_f32(std::span<const float> values);
  void commit();

 private:
  std::filesystem::path path_;
  std::vector<TensorSpec> specs_;
  AtomicFile file_;
  size_t total_ = 0, written_ = 0;
};

// A whole tensor in memory, for small files (act scales, test fixtures).
struct TensorBlob {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

TensorBlob make_f32_blob(std::string name, std::vector<int64_t> shape, const float* data);

// Writes `tensors` sorted by name, atomically.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sq
