#include <gtest/gtest.h>

#include "backend/cuda/device_query.h"

namespace sq {
namespace {

TEST(CudaDevice, QueryIsSafeAndReportsSaneDevices) {
  const auto devs = cuda::query_devices();
  if (devs.empty()) GTEST_SKIP() << "no CUDA device visible";
  for (const auto& d : devs) {
    EXPECT_GE(d.cc_major, 7);
    EXPECT_GT(d.sm_count, 0);
    EXPECT_GT(d.total_mem, size_t{1} << 30);
    EXPECT_FALSE(d.summary().empty());
  }
}

}  // namespace
}  // namespace sq
