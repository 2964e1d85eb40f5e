// ISA-independent part of the INT8 GEMM: weight packing, A packing, blocking, threading and
// dispatch to the per-ISA tile kernels (gemm_s8_internal.h). Built with baseline flags only.
//
// Blocking: each tile keeps its whole K in registers, so there is no K blocking and the epilogue
// runs once per output element. Work is a grid of (column chunk, row block) tasks; a task packs
// its row block of A (≤ ~512 KiB, stays in L2) and sweeps the W panels of its chunk. Decode-sized
// M (≤ kGemvMaxM) packs A once and streams every W panel exactly once, split over threads.
// Every output element is one task's exact integer sum, so thread count never changes results.
#include "backend/cpu/gemm_s8.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_s8_internal.h"
#include "core/error.h"
#include "core/parallel.h"

namespace sq::cpu {
namespace {

constexpr int64_t kGemvMaxM = 4;
constexpr int64_t kABlockBytes = 512 * 1024;

const detail::IsaKernels& kernels(Isa isa) {
#if defined(__x86_64__)  // the SIMD files are only built for x86-64 (src/backend/CMakeLists.txt)
  switch (isa) {
    case Isa::kAvx2:
      return detail::avx2_kernels();
    case Isa::kAvxVnni:
      return detail::avxvnni_kernels();
    case Isa::kAvx512Vnni:
      return detail::avx512vnni_kernels();
    case Isa::kScalar:
      break;
  }
#endif
  fail("internal error: no SIMD kernels for ISA {}", isa_name(isa));
}

template <typename T>
std::shared_ptr<T[]> alloc_aligned(size_t count) {
  const size_t bytes = std::max<size_t>(64, (count * sizeof(T) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  SQ_CHECK(p != nullptr, "out of memory packing INT8 weights ({} bytes)", bytes);
  std::memset(p, 0, bytes);
  return std::shared_ptr<T[]>(static_cast<T*>(p), [](T* q) { std::free(q); });
}

// Packs rows [0, mr) of `a` (row stride k) into the micro-panel layout of gemm_s8_internal.h.
void pack_a(const int8_t* a, int64_t k, int64_t k4, int mr, bool offset, uint8_t* out) {
  const uint8_t x = offset ? 0x80 : 0x00;
  const int64_t kfull = k / 4;
  for (int i = 0; i < mr; ++i) {
    const int8_t* row = a + i * k;
    uint8_t* dst = out + i * 4;
    for (int64_t g = 0; g < kfull; ++g) {
      uint32_t v;
      std::memcpy(&v, row + g * 4, 4);
      v ^= x * 0x01010101u;
      std::memcpy(dst + g * mr * 4, &v, 4);
    }
    for (int64_t g = kfull; g < k4; ++g) {
      for (int b = 0; b < 4; ++b) {
        const int64_t p = g * 4 + b;
        dst[g * mr * 4 + b] = static_cast<uint8_t>((p < k ? row[p] : 0)) ^ x;
      }
    }
  }
}

// Output description shared by the int32 and fp32 entry points.
struct Out {
  int32_t* c = nullptr;
  float* y = nullptr;
  const Epilogue* e = nullptr;
};

void check_args(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, const void* out) {
  SQ_CHECK(m >= 0, "gemm_s8: negative M ({})", m);
  SQ_CHECK(k == w.k(), "gemm_s8: A has K = {} but the packed weights have K = {}", k, w.k());
  SQ_CHECK(m == 0 || w.n() == 0 || k == 0 || (a != nullptr && out != nullptr),
           "gemm_s8: null input or output");
}

void run(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, const Out& out) {
  const int64_t n = w.n();
  if (m == 0 || n == 0) return;
  if (w.isa() == Isa::kScalar || k == 0) {
    // K = 0 still goes through the scalar path: every sum is 0 and the epilogue applies.
    const int8_t* wd = w.data();
    parallel_for(
        m,
        [&](int64_t b, int64_t e) {
          if (out.c) {
            ref::gemm_s8s8s32(a + b * k, e - b, k, wd, n, out.c + b * n);
          } else {
            // The ref functions index sx by the local row, so shift sx for per-token scales.
            Epilogue ep = *out.e;
            if (ep.per_token) ep.sx += b;
            ref::gemm_s8_f32(a + b * k, e - b, k, wd, n, ep, out.y + b * n);
          }
        },
        std::max<int64_t>(1, 4096 / std::max<int64_t>(1, n)));
    return;
  }

  const detail::IsaKernels& kt = kernels(w.isa());
  const int64_t k4 = w.k4();
  const int nr = kt.nr;
  const int64_t panels = (n + nr - 1) / nr;
  const int64_t panel_bytes = k4 * 4 * nr;

  // Rows per task: a multiple of the tile height whose packed A fits kABlockBytes; decode-sized M
  // is one block so that W is streamed once.
  int64_t mc = m;
  if (m > kGemvMaxM) {
    mc = std::max<int64_t>(kt.mr, kABlockBytes / (k4 * 4) / kt.mr * kt.mr);
    mc = std::min(mc, m);
  }
  const int64_t m_blocks = (m + mc - 1) / mc;
  const int64_t threads = num_threads();
  // Enough column chunks to balance the threads even when there is a single row block.
  const int64_t n_chunks = std::min(panels, std::max<int64_t>(threads * 4, 1));
  const int64_t tasks = n_chunks * m_blocks;

  auto body = [&](int64_t t_begin, int64_t t_end) {
    thread_local std::vector<uint8_t> abuf;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t nc = t / m_blocks, mb = t % m_blocks;
      const int64_t p_begin = panels * nc / n_chunks, p_end = panels * (nc + 1) / n_chunks;
      const int64_t i_begin = mb * mc, i_end = std::min(m, i_begin + mc);
      // Pack the row block as consecutive micro-panels of kt.mr rows (the last may be shorter).
      const size_t need = static_cast<size_t>((i_end - i_begin) * k4 * 4);
      if (abuf.size() < need) abuf.resize(need);
      for (int64_t i = i_begin; i < i_end; i += kt.mr) {
        const int mr = static_cast<int>(std::min<int64_t>(kt.mr, i_end - i));
        pack_a(a + i * k, k, k4, mr, kt.a_offset, abuf.data() + (i - i_begin) * k4 * 4);
      }
      for (int64_t p = p_begin; p < p_end; ++p) {
        const int64_t n0 = p * nr;
        detail::TileArgs ta{};
        ta.w = w.data() + p * panel_bytes;
        ta.k4 = k4;
        ta.nr = static_cast<int>(std::min<int64_t>(nr, n - n0));
        ta.comp = w.comp() ? w.comp() + n0 : nullptr;
        ta.ldc = n;
        if (out.e) {
          ta.sx_stride = out.e->per_token ? 1 : 0;
          ta.sw = out.e->sw + (out.e->per_channel ? n0 : 0);
          ta.sw_stride = out.e->per_channel ? 1 : 0;
          ta.bias = out.e->bias ? out.e->bias + n0 : nullptr;
        }
        for (int64_t i = i_begin; i < i_end; i += kt.mr) {
          ta.mr = static_cast<int>(std::min<int64_t>(kt.mr, i_end - i));
          ta.a = abuf.data() + (i - i_begin) * k4 * 4;
          if (out.e) {
            ta.y = out.y + i * n + n0;
            ta.sx = out.e->sx + (out.e->per_token ? i : 0);
          } else {
            ta.c = out.c + i * n + n0;
          }
          kt.tile(ta);
        }
      }
    }
  };
  parallel_for(tasks, body);
}

}  // namespace

PackedS8 PackedS8::pack(const int8_t* w, int64_t n, int64_t k, Isa isa) {
  SQ_CHECK(n >= 0 && k >= 0, "PackedS8::pack: negative shape [{}, {}]", n, k);
  SQ_CHECK(k <= kMaxK, "PackedS8::pack: K = {} exceeds {} (int32 sums could overflow)", k, kMaxK);
  SQ_CHECK(isa_supported(isa), "PackedS8::pack: ISA {} is not supported by this CPU",
           isa_name(isa));
  SQ_CHECK(n * k == 0 || w != nullptr, "PackedS8::pack: null weights");
  for (int64_t i = 0; i < n * k; ++i) {
    SQ_CHECK(w[i] != -128,
             "PackedS8::pack: weight [{}, {}] is -128; INT8 weights must lie in [-127, 127]", i / k,
             i % k);
  }
  PackedS8 p;
  p.n_ = n;
  p.k_ = k;
  p.k4_ = (k + 3) / 4;
  p.isa_ = isa;
  if (isa == Isa::kScalar) {
    p.nr_ = 1;
    p.data_bytes_ = static_cast<size_t>(n * k);
    p.data_ = alloc_aligned<int8_t>(p.data_bytes_);
    if (p.data_bytes_) std::memcpy(p.data_.get(), w, p.data_bytes_);
    return p;
  }
  const detail::IsaKernels& kt = kernels(isa);
  const int nr = kt.nr;
  p.nr_ = nr;
  const int64_t panels = (n + nr - 1) / nr;
  const int64_t panel_bytes = p.k4_ * 4 * nr;
  p.data_bytes_ = static_cast<size_t>(panels * panel_bytes);
  p.data_ = alloc_aligned<int8_t>(p.data_bytes_);
  int8_t* d = p.data_.get();
  for (int64_t j = 0; j < n; ++j) {
    int8_t* col = d + (j / nr) * panel_bytes + (j % nr) * 4;
    for (int64_t q = 0; q < k; ++q) col[(q / 4) * nr * 4 + q % 4] = w[j * k + q];
  }
  if (kt.a_offset) {
    p.comp_ = alloc_aligned<int32_t>(static_cast<size_t>(panels * nr));
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = 0;
      for (int64_t q = 0; q < k; ++q) s += w[j * k + q];
      p.comp_[j] = static_cast<int32_t>(128 * s);  // |128 · s| ≤ 128 · 127 · kMaxK < 2³¹
    }
  }
  return p;
}

size_t PackedS8::bytes() const {
  const size_t comp = comp_ ? static_cast<size_t>((n_ + nr_ - 1) / nr_ * nr_) * 4 : 0;
  return data_bytes_ + comp;
}

void gemm_s8s8s32(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, int32_t* c) {
  check_args(a, m, k, w, c);
  Out out;
  out.c = c;
  run(a, m, k, w, out);
}

void gemm_s8_f32(const int8_t* a, int64_t m, int64_t k, const PackedS8& w, const Epilogue& e,
                 float* y) {
  check_args(a, m, k, w, y);
  SQ_CHECK(e.sx != nullptr && e.sw != nullptr, "gemm_s8_f32: null activation or weight scales");
  Out out;
  out.y = y;
  out.e = &e;
  run(a, m, k, w, out);
}

}  // namespace sq::cpu
