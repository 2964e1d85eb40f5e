// sq::Error is the one exception type for user-facing failures (bad files, bad flags, unsupported
// models). Its message is meant to be printed as-is on one line: it names the file or flag and says
// what to do. SQ_CHECK throws it; internal invariants that cannot be caused by input use SQ_DCHECK.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> fmt_str, Args&&... args) {
  throw Error(fmt::format(fmt_str, std::forward<Args>(args)...));
}

}  // namespace sq

#define SQ_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::sq::fail(__VA_ARGS__); \
  } while (0)

#ifndef NDEBUG
#define SQ_DCHECK(cond)                                                                       \
  do {                                                                                        \
    if (!(cond)) ::sq::fail("internal error: {} failed at {}:{}", #cond, __FILE__, __LINE__); \
  } while (0)
#else
#define SQ_DCHECK(cond) \
  do {                  \
  } while (0)
#endif
