// Safetensors reading through mmap, single file or sharded via model.safetensors.index.json.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
// "__metadata__": {str: str}}, then the data section. Every header is validated before any tensor
// is handed out: length within the file, valid JSON, known dtype, shape x element size equal to the
// byte span, spans inside the data section and not overlapping. Tensors are zero-copy views that
// keep their file mapped; their data may be unaligned (read with memcpy or to_f32).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/mmap_file.h"

namespace sq {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // possibly unaligned
  size_t nbytes = 0;
  std::shared_ptr<const MappedFile> file;  // keeps `data` alive

  int64_t numel() const;
  // Copies the tensor to f32 (exact upcast from F16/BF16). Throws for integer dtypes.
  std::vector<float> to_f32() const;
  // Copies an I32/I64 tensor into int32 values.
  std::vector<int32_t> to_i32() const;
};

// One safetensors file.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }
  const TensorView* find(const std::string& name) const;
  // Throws sq::Error "missing tensor NAME in FILE" when absent.
  const TensorView& get(const std::string& name) const;

 private:
  std::filesystem::path path_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards that
// model.safetensors.index.json names (every name must be found in the shard it points to).
class Checkpoint {
 public:
  static Checkpoint open_dir(const std::filesystem::path& dir);

  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // error names the directory
  const std::map<std::string, const TensorView*>& tensors() const { return index_; }
  const std::vector<SafetensorsFile>& files() const { return *files_; }
  const std::filesystem::path& dir() const { return dir_; }
  // Union of the files' __metadata__ (first file wins on conflicts).
  std::map<std::string, std::string> metadata() const;

 private:
  std::filesystem::path dir_;
  // Shared so that copies of a Checkpoint (and of a Model) keep valid index_ pointers.
  std::shared_ptr<std::vector<SafetensorsFile>> files_ =
      std::make_shared<std::vector<SafetensorsFile>>();
  std::map<std::string, const TensorView*> index_;
};

}  // namespace sq
