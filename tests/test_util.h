// Helpers shared by the tests: where ../shared lives (SQ_SHARED_DIR, default ../shared relative to
// the repository) and a skip with a clear message when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

namespace sq::test {

inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SQ_SHARED_DIR"); env && *env) return env;
  return std::filesystem::path(SQ_SOURCE_DIR) / ".." / "shared";
}

inline bool have_shared() { return std::filesystem::exists(shared_dir() / "golden" / "README.md"); }

}  // namespace sq::test

// Skips the current test when ../shared (the golden data and models) is not available.
#define SQ_REQUIRE_SHARED()                                                             \
  do {                                                                                  \
    if (!::sq::test::have_shared())                                                     \
      GTEST_SKIP() << "shared data not found at " << ::sq::test::shared_dir()           \
                   << " (set SQ_SHARED_DIR to the folder holding golden/ and models/)"; \
  } while (0)
