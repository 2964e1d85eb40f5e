// Read-only memory mapping of a whole file. The mapping lives as long as the MappedFile object
// (shared_ptr owners keep tensor views valid). Empty files map to an empty span.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace sq {

class MappedFile {
 public:
  // Throws sq::Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // Drops the resident pages of [p, p + n) (rounded inward to pages) so streaming passes over a
  // large checkpoint keep memory flat; the data stays readable and is re-read from disk if needed.
  void release(const std::byte* p, size_t n) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) text file; throws sq::Error naming the path on failure.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace sq
