// Hopper INT8 GEMM (gemm_s8_cuda.h). A persistent, warp-specialized kernel:
//  - one CTA per SM walks output tiles of kBM × kBN (grouped along M so that neighbouring CTAs
//    share W panels in L2);
//  - warpgroup 0 is the producer: one thread streams 128-byte-wide K slabs of A and W with the
//    tensor memory accelerator (128-byte swizzle) into a kStages-deep shared-memory ring, each
//    stage guarded by a "full" mbarrier (TMA transaction bytes) and an "empty" one (consumers);
//  - warpgroups 1 and 2 are consumers: each multiplies its 64 rows of the tile with wgmma
//    m64n256k32 s8·s8→s32, keeps one wgmma group in flight, releases a stage once the wgmmas that
//    read it have retired, and writes its accumulators through the fused epilogue
//    (acc · s_x · s_w + bias → bf16, or raw int32).
// Register budgets are rebalanced with setmaxnreg (producer 40, consumers 232).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "backend/cuda/gemm_s8_cuda.h"

namespace sq::cuda {
namespace {

constexpr int kBM = 128, kBK = 128;  // kBK in bytes = int8 elements = one swizzle row
constexpr int kThreads = 384;        // producer warpgroup + two consumer warpgroups
constexpr int kATileBytes = kBM * kBK;

// Two tile widths: 256 columns (m64n256k32, the large-M workhorse) and 128 (m64n128k32) for
// medium M, where 256-wide tiles leave SMs idle (M = 512, N = 4096 is 64 tiles for 132 SMs). The
// narrower tile's smaller stages buy a deeper ring in the same shared memory.
template <int BN>
struct TileCfg {
  static constexpr int kBN = BN;
  static constexpr int kStages = BN == 256 ? 4 : 6;
  static constexpr int kWTileBytes = BN * kBK;
  static constexpr int kStageBytes = kATileBytes + kWTileBytes;
  static constexpr int kAcc = BN / 2;  // int32 accumulators per consumer thread (64 × BN / 128)
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024 + 2 * kStages * 8;
  static_assert(kAcc * 2 == kBN && kSmemBytes <= 227 * 1024);
};

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SQ_SM90A 1
#endif

#ifdef SQ_SM90A
constexpr int kGroupM = 8;  // tiles walked in groups of kGroupM row-tiles per column panel

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t phase) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(smem_u32(bar)),
      "r"(phase)
      : "memory");
}

__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar,
                                            int32_t c0, int32_t c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%3, %4}], [%2];" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// Shared-memory matrix descriptor of a K-major operand in the 128-byte swizzle layout that TMA
// writes: rows of 128 bytes, 8-row groups 1024 bytes apart (stride byte offset).
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((smem_u32(p) & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(1) << 16;          // leading byte offset (unused for SW128 K-major)
  d |= static_cast<uint64_t>(1024 >> 4) << 32;  // stride byte offset
  d |= static_cast<uint64_t>(1) << 62;          // 128-byte swizzle
  return d;
}

__device__ __forceinline__ void wgmma_m64n256k32_s8(int32_t (&d)[128], uint64_t desc_a,
                                                    uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, "
      "%74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, "
      "%92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, "
      "%108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, "
      "%123, %124, %125, %126, %127}, %128, %129, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]),
        "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]),
        "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]),
        "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]),
        "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
        "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]),
        "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]),
        "+r"(d[63]), "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]),
        "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]),
        "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]),
        "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]),
        "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]),
        "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]),
        "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]),
        "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]),
        "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]),
        "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

__device__ __forceinline__ void wgmma_m64n128k32_s8(int32_t (&d)[64], uint64_t desc_a,
                                                    uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]),
        "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]),
        "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]),
        "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]),
        "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
        "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]),
        "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]),
        "+r"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// The wgmma for a BN-wide tile.
template <int BN>
__device__ __forceinline__ void wgmma_s8(int32_t (&d)[BN / 2], uint64_t desc_a, uint64_t desc_b,
                                         int accumulate) {
  if constexpr (BN == 256) {
    wgmma_m64n256k32_s8(d, desc_a, desc_b, accumulate);
  } else {
    wgmma_m64n128k32_s8(d, desc_a, desc_b, accumulate);
  }
}

// Tile t of the persistent walk → (row tile, column tile), grouped so that kGroupM consecutive
// tiles share one column panel of W.
__device__ __forceinline__ void tile_coords(int t, int tiles_m, int tiles_n, int& tm, int& tn) {
  const int per_group = kGroupM * tiles_n;
  const int group = t / per_group, first_m = group * kGroupM;
  const int group_m = min(tiles_m - first_m, kGroupM);
  const int in_group = t % per_group;
  tm = first_m + in_group % group_m;
  tn = in_group / group_m;
}
#endif  // SQ_SM90A

template <int BN, bool kBf16Out>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_s8_sm90_kernel(const __grid_constant__ CUtensorMap map_a,
                        const __grid_constant__ CUtensorMap map_w, int32_t* c, uint16_t* y,
                        GemmS8Epilogue ep, int m, int n, int k) {
#ifdef SQ_SM90A
  using Cfg = TileCfg<BN>;
  constexpr int kBN = Cfg::kBN, kStages = Cfg::kStages, kStageBytes = Cfg::kStageBytes;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                             ~static_cast<uintptr_t>(1023));
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStageBytes);
  uint64_t* empty = full + kStages;

  const int tid = threadIdx.x, wg = tid / 128;
  const int tiles_m = (m + kBM - 1) / kBM, tiles_n = (n + kBN - 1) / kBN;
  const int tiles = tiles_m * tiles_n, k_tiles = (k + kBK - 1) / kBK;

  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 2);  // one arrival per consumer warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid == 0) {
      int it = 0;  // k-slab counter across all tiles: stage = it % kStages
      for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int tm, tn;
        tile_coords(t, tiles_m, tiles_n, tm, tn);
        for (int kt = 0; kt < k_tiles; ++kt, ++it) {
          const int s = it % kStages;
          if (it >= kStages) mbar_wait(&empty[s], ((it / kStages) - 1) & 1);
          uint8_t* st = smem + s * kStageBytes;
          mbar_expect_tx(&full[s], kStageBytes);
          tma_load_2d(st, &map_a, &full[s], kt * kBK, tm * kBM);
          tma_load_2d(st + kATileBytes, &map_w, &full[s], kt * kBK, tn * kBN);
        }
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int cw = wg - 1;  // consumer index: rows [64·cw, 64·cw + 64) of the tile
  const int warp = (tid % 128) / 32, lane = tid % 32;
  int it = 0;
  // The tile's epilogue operands (per-channel scales and bias of its 256 columns, per-token scales
  // of its 128 rows) are staged in shared memory before the mainloop: read from global memory in
  // the epilogue they stalled it on L1TEX latency (ncu: 39% of the consumers' stall cycles).
  __shared__ float sw_s[kBN], bias_s[kBN], sx_s[kBM];
  const int ct = tid - 128;  // 0..255 over the two consumer warpgroups
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    int tm, tn;
    tile_coords(t, tiles_m, tiles_n, tm, tn);
    if constexpr (kBf16Out) {
      asm volatile("bar.sync 1, 256;" ::: "memory");  // the previous tile's epilogue is done
      const int col = tn * kBN + ct, row = tm * kBM + ct;
      if (ct < kBN) {
        sw_s[ct] = ep.per_channel ? (col < n ? ep.sw[col] : 0.0f) : ep.sw[0];
        bias_s[ct] = ep.bias && col < n ? ep.bias[col] : 0.0f;
      }
      if (ct < kBM) sx_s[ct] = ep.per_token ? (row < m ? ep.sx[row] : 0.0f) : ep.sx[0];
      asm volatile("bar.sync 1, 256;" ::: "memory");
    }
    int32_t acc[Cfg::kAcc];
#pragma unroll
    for (int i = 0; i < Cfg::kAcc; ++i) acc[i] = 0;
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % kStages;
      mbar_wait(&full[s], (it / kStages) & 1);
      const uint8_t* a_tile = smem + s * kStageBytes + cw * 64 * kBK;
      const uint8_t* w_tile = smem + s * kStageBytes + kATileBytes;
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
      for (int kk = 0; kk < kBK / 32; ++kk) {
        wgmma_s8<BN>(acc, smem_desc(a_tile + kk * 32), smem_desc(w_tile + kk * 32),
                     (kt > 0 || kk > 0) ? 1 : 0);
      }
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
      // Keep this slab's group in flight; the previous slab's group has retired, so its stage
      // can be refilled.
      asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
      if (kt > 0 && (tid % 128) == 0) mbar_arrive(&empty[(it - 1) % kStages]);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    if ((tid % 128) == 0) mbar_arrive(&empty[(it - 1) % kStages]);

    // Accumulator layout of wgmma m64nN: warp w holds rows 16w..16w+15 of the 64; for each
    // 8-column group j a thread holds (r, c), (r, c+1), (r+8, c), (r+8, c+1) with r = lane/4,
    // c = 8j + 2·(lane%4).
    const int r_base = tm * kBM + cw * 64 + warp * 16 + lane / 4;
    const int c_base = tn * kBN + 2 * (lane % 4);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = r_base + 8 * h;
      if (row >= m) continue;
      const float sxr = kBf16Out ? sx_s[row - tm * kBM] : 0.0f;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const int col = c_base + 8 * j;
        const int32_t v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
        const int64_t off = static_cast<int64_t>(row) * n + col;
        if constexpr (kBf16Out) {
          // The CPU epilogue's order: acc · sx · sw + bias, each step rounded to fp32, no FMA.
          auto dqf = [&](int32_t v, int cc) {
            const int lc = cc - tn * kBN;
            float f = __fmul_rn(__fmul_rn(static_cast<float>(v), sxr), sw_s[lc]);
            if (ep.bias) f = __fadd_rn(f, bias_s[lc]);
            return f;
          };
          auto dq = [&](int32_t v, int cc) {
            return __bfloat16_as_ushort(__float2bfloat16_rn(dqf(v, cc)));
          };
          if (ep.f32_out) {
            float* yf = reinterpret_cast<float*>(y);
            if (col + 1 < n && (n % 2) == 0) {
              *reinterpret_cast<float2*>(yf + off) = make_float2(dqf(v0, col), dqf(v1, col + 1));
            } else {
              if (col < n) yf[off] = dqf(v0, col);
              if (col + 1 < n) yf[off + 1] = dqf(v1, col + 1);
            }
          } else if (col + 1 < n && (n % 2) == 0) {
            const uint32_t pair = dq(v0, col) | (static_cast<uint32_t>(dq(v1, col + 1)) << 16);
            *reinterpret_cast<uint32_t*>(y + off) = pair;
          } else {
            if (col < n) y[off] = dq(v0, col);
            if (col + 1 < n) y[off + 1] = dq(v1, col + 1);
          }
        } else {
          if (col + 1 < n && (n % 2) == 0) {
            *reinterpret_cast<int2*>(c + off) = make_int2(v0, v1);
          } else {
            if (col < n) c[off] = v0;
            if (col + 1 < n) c[off + 1] = v1;
          }
        }
      }
    }
  }
#else
  __trap();  // built for another GPU: the host side refuses before launching
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    SQ_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                                   cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || p == nullptr)
      throw std::runtime_error("cuTensorMapEncodeTiled is not available from the CUDA driver");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A [rows, k] int8 row-major matrix as a TMA map with kBK × box_rows boxes, 128-byte swizzle.
CUtensorMap make_map(const int8_t* p, int64_t rows, int64_t k, int box_rows) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(k)};
  const cuuint32_t box[2] = {kBK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r =
      encode_fn()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<int8_t*>(p), dims, strides,
                  box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("cuTensorMapEncodeTiled failed (error " + std::to_string(r) +
                             "): need 16-byte aligned int8 data and K % 16 == 0");
  return map;
}

int sm_count() {
  static const int n = current_device_attribute(cudaDevAttrMultiProcessorCount);
  return n;
}

template <int BN, bool kBf16Out>
void launch_tiles(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y,
                  const GemmS8Epilogue& ep, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  using Cfg = TileCfg<BN>;
  const CUtensorMap map_a = make_map(a, m, k, kBM), map_w = make_map(w, n, k, BN);
  static std::once_flag once;
  std::call_once(once, [] {
    SQ_CUDA_CHECK(cudaFuncSetAttribute(gemm_s8_sm90_kernel<BN, kBf16Out>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Cfg::kSmemBytes));
  });
  const int64_t tiles = ((m + kBM - 1) / kBM) * ((n + BN - 1) / BN);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, sm_count()));
  gemm_s8_sm90_kernel<BN, kBf16Out><<<grid, kThreads, Cfg::kSmemBytes, stream>>>(
      map_a, map_w, c, y, ep, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k));
  SQ_CUDA_CHECK(cudaGetLastError());
}

GemmTileN g_tile_override = GemmTileN::kAuto;

// Persistent waves × tile width, the narrow tile's lower efficiency per column (smaller wgmma,
// same A traffic) priced at 0.85: narrow wins when wide tiles would leave SMs idle.
GemmTileN pick_tile(int64_t m, int64_t n) {
  if (g_tile_override != GemmTileN::kAuto) return g_tile_override;
  const int64_t sms = sm_count(), tm = (m + kBM - 1) / kBM;
  const double wide = static_cast<double>((tm * ((n + 255) / 256) + sms - 1) / sms);
  const double narrow = static_cast<double>((tm * ((n + 127) / 128) + sms - 1) / sms) * 0.5 / 0.85;
  return narrow < wide ? GemmTileN::k128 : GemmTileN::k256;
}

template <bool kBf16Out>
void launch(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y, const GemmS8Epilogue& ep,
            int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (k % 16 != 0)
    throw std::runtime_error("CUDA INT8 GEMM: K = " + std::to_string(k) +
                             " must be a multiple of 16");
  if (k <= 0) throw std::runtime_error("CUDA INT8 GEMM: K must be positive");
  if (m <= 0 || n <= 0) return;
  if (m <= kGemvMaxRows) return gemv_s8(a, w, c, y, ep, m, n, k, stream);
  if (!gemm_s8_supported())
    throw std::runtime_error("the CUDA INT8 GEMM needs a Hopper GPU (sm_90) for M > 16");
  if (m > INT32_MAX / 2 || n > INT32_MAX / 2 || k > INT32_MAX / 2)
    throw std::runtime_error("CUDA INT8 GEMM: dimensions beyond 2^30");
  if (pick_tile(m, n) == GemmTileN::k128)
    return launch_tiles<128, kBf16Out>(a, w, c, y, ep, m, n, k, stream);
  launch_tiles<256, kBf16Out>(a, w, c, y, ep, m, n, k, stream);
}

}  // namespace

void set_gemm_tile_override(GemmTileN t) { g_tile_override = t; }

bool gemm_s8_supported() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

void gemm_s8s8s32(const int8_t* a, const int8_t* w, int32_t* c, int64_t m, int64_t n, int64_t k,
                  cudaStream_t stream) {
  launch<false>(a, w, c, nullptr, {}, m, n, k, stream);
}

void gemm_s8_bf16(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, uint16_t* y,
                  int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  GemmS8Epilogue e = ep;
  e.f32_out = false;
  launch<true>(a, w, nullptr, y, e, m, n, k, stream);
}

void gemm_s8_f32(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, float* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t stream) {
  GemmS8Epilogue e = ep;
  e.f32_out = true;
  launch<true>(a, w, nullptr, reinterpret_cast<uint16_t*>(y), e, m, n, k, stream);
}

}  // namespace sq::cuda
