#include "core/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace sq {
namespace {

TEST(Parallel, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n;
    }
  }
  set_num_threads(2);
}

TEST(Parallel, MinChunkLimitsSplitting) {
  set_num_threads(4);
  std::atomic<int> calls{0};
  parallel_for(
      10, [&](int64_t, int64_t) { calls++; }, 100);
  EXPECT_EQ(calls.load(), 1);
  set_num_threads(2);
}

}  // namespace
}  // namespace sq
