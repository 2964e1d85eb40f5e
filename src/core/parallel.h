// A small persistent thread pool behind sq::parallel_for. The number of threads is set once from
// --threads (default: hardware concurrency). Work is split into contiguous chunks, one per thread,
// so results never depend on scheduling (each index is computed by exactly one deterministic body).
#pragma once

#include <cstdint>
#include <functional>

namespace sq {

// Sets the number of worker threads (>= 1) used by parallel_for and by OpenBLAS.
void set_num_threads(int n);
int num_threads();

// Calls fn(begin, end) over disjoint chunks covering [0, n); blocks until all chunks are done.
// Runs inline when n is small or the pool has one thread. fn must not throw.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                  int64_t min_chunk = 1);

}  // namespace sq
