#include "io/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace sq {

AtomicFile::AtomicFile(const std::filesystem::path& path) : path_(path) {
  std::string tmpl = path.string() + ".tmp-XXXXXX";
  fd_ = ::mkstemp(tmpl.data());
  SQ_CHECK(fd_ >= 0, "cannot create {}: {} (is the directory writable?)", path.string(),
           std::strerror(errno));
  tmp_ = tmpl;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    SQ_CHECK(n > 0, "cannot write {}: {}", path_.string(), std::strerror(errno));
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::write(const std::string& s) {
  write(std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()));
}

void AtomicFile::commit() {
  SQ_CHECK(::fsync(fd_) == 0, "cannot flush {}: {}", path_.string(), std::strerror(errno));
  ::fchmod(fd_, 0644);
  ::close(fd_);
  fd_ = -1;
  SQ_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename {} to {}: {}", tmp_.string(),
           path_.string(), std::strerror(errno));
  committed_ = true;
}

AtomicDir::AtomicDir(const std::filesystem::path& path) : path_(path) {
  auto parent = path.parent_path();
  if (parent.empty()) parent = ".";
  SQ_CHECK(std::filesystem::is_directory(parent),
           "cannot create {}: parent directory {} does not exist", path.string(), parent.string());
  std::string tmpl = (parent / (path.filename().string() + ".tmp-XXXXXX")).string();
  SQ_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create a directory next to {}: {}",
           path.string(), std::strerror(errno));
  tmp_ = tmpl;
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
  }
}

void AtomicDir::commit() {
  std::error_code ec;
  if (std::filesystem::exists(path_)) std::filesystem::remove_all(path_, ec);
  std::filesystem::rename(tmp_, path_, ec);
  SQ_CHECK(!ec, "cannot move {} to {}: {}", tmp_.string(), path_.string(), ec.message());
  std::filesystem::permissions(path_, std::filesystem::perms(0755), ec);
  committed_ = true;
}

void write_file_atomic(const std::filesystem::path& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace sq
