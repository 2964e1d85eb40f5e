#include "core/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

// Weak: core does not depend on BLAS, but when OpenBLAS is linked its pool follows --threads too.
extern "C" void openblas_set_num_threads(int num_threads) __attribute__((weak));

namespace sq {
namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
    size_ = n;
  }
  ~Pool() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return size_; }

  void run(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t max_parts = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
    const int parts = static_cast<int>(std::min<int64_t>(size_, max_parts));
    if (parts <= 1) {
      fn(0, n);
      return;
    }
    std::unique_lock lk(run_mu_);  // one parallel region at a time
    {
      std::lock_guard g(mu_);
      fn_ = &fn;
      n_ = n;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    cv_.notify_all();
    chunk(0);
    std::unique_lock g(mu_);
    done_cv_.wait(g, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void chunk(int part) {
    const int64_t begin = n_ * part / parts_;
    const int64_t end = n_ * (part + 1) / parts_;
    if (begin < end) (*fn_)(begin, end);
  }
  void loop(int idx) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (idx >= parts_) continue;
      }
      chunk(idx);
      std::lock_guard lk(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  int size_ = 1;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

int g_threads = 0;
std::unique_ptr<Pool> g_pool;
std::mutex g_pool_mu;

Pool& pool() {
  std::lock_guard lk(g_pool_mu);
  if (!g_pool) {
    if (g_threads <= 0) g_threads = std::max(1u, std::thread::hardware_concurrency());
    g_pool = std::make_unique<Pool>(g_threads);
  }
  return *g_pool;
}

}  // namespace

void set_num_threads(int n) {
  std::lock_guard lk(g_pool_mu);
  g_threads = std::max(1, n);
  g_pool.reset();
  if (openblas_set_num_threads) openblas_set_num_threads(g_threads);
}

int num_threads() { return pool().size(); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  pool().run(n, min_chunk, fn);
}

}  // namespace sq
