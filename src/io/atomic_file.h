// Atomic outputs: everything is written to a temporary sibling first and renamed into place only
// on commit(), so a failure (exception, Ctrl-C between steps) never leaves a partial output behind.
#pragma once

#include <filesystem>
#include <span>
#include <string>

namespace sq {

// A file written through a temp sibling "NAME.tmp-XXXXXX" and renamed on commit().
class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& path);
  ~AtomicFile();  // removes the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::span<const std::byte> bytes);
  void write(const std::string& s);
  void commit();  // fsync + rename

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// A directory built in a temp sibling and renamed over `path` on commit(). The target must not
// exist, or be a directory this tool may replace (the caller decides and says so in its flags).
class AtomicDir {
 public:
  explicit AtomicDir(const std::filesystem::path& path);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::filesystem::path& tmp() const { return tmp_; }
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  bool committed_ = false;
};

// Writes a small file atomically.
void write_file_atomic(const std::filesystem::path& path, const std::string& contents);

}  // namespace sq
