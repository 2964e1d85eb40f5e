// Hopper INT8 GEMM (gemm_s8_cuda.h). A persistent, warp-specialized kernel:
//  - one CTA per SM walks output tiles of kBM × kBN (grouped along M so that neighbouring CTAs
//    share W panels in L2);
//  - warpgroup 0 is the producer: one thread streams 128-byte-wide K slabs of A and W with the
//    tensor memory accelerator (128-byte swizzle) into a kStages-deep shared-memory ring, each
//    stage guarded by a "full" mbarrier (TMA transaction bytes) and an "empty" one (consumers);
//  - warpgroups 1 and 2 are consumers: each multiplies its 64 rows of the tile with wgmma
//    m64n256k32 s8·s8→s32, keeps one wgmma group in flight, releases a stage once the wgmmas that
//    read it have retired, and writes its accumulators through the fused epilogue
//    (acc · s_x · s_w + bias → bf16 or fp32, staged per warp in shared memory and written by TMA
//    stores; or raw int32, stored directly).
// Register budgets are rebalanced with setmaxnreg (producer 40, consumers 232).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include "backend/cuda/gemm_s8_cuda.h"
#include "backend/cuda/kernel_launch.cuh"
#include "backend/cuda/quant_math.cuh"
#include "backend/cuda/sm90_ptx.cuh"

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
  static_assert(kAcc * 2 == kBN);
};

#ifdef SQ_SM90A
using namespace sm90;
constexpr int kGroupM = 8;  // tiles walked in groups of kGroupM row-tiles per column panel

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

// How the consumers write the tile: raw int32, the fused epilogue stored straight from the
// accumulator registers (any N, fp32 or bf16 per ep.f32_out), or the fused epilogue staged per
// warp in shared memory and written by TMA stores. The direct stores cover 8 rows × 16 or 32
// bytes per warp instruction, so the L1 takes 8 wavefronts for each; a 256-wide tile's epilogue
// kept both consumers off the tensor cores for microseconds. The staged one writes each warp's
// 16 × 32-byte-row chunk with stmatrix (bf16) or conflict-free float2 stores (fp32) and hands it
// to the TMA unit, which streams it out while the next tile's mainloop starts.
// kTmaGlu is kTmaF32 for the kGluBlock-interleaved gate|up weight: each thread combines its gate
// column c with the up column c + 64 of the same 128-column block and stores SiLU(gate) · up, a
// tile of half the width.
enum class Epi { kInt32, kDirect, kTmaBf16, kTmaF32, kTmaGlu };
__host__ __device__ constexpr bool is_tma(Epi e) {
  return e == Epi::kTmaBf16 || e == Epi::kTmaF32 || e == Epi::kTmaGlu;
}

constexpr int kEpiBufBytes = 1024;               // one chunk: 16 rows × 64 bytes, 64-byte swizzle
constexpr int kEpiBytes = 8 * 2 * kEpiBufBytes;  // 8 consumer warps, double-buffered

template <int BN>
constexpr int smem_bytes() {
  return TileCfg<BN>::kStages * TileCfg<BN>::kStageBytes + kEpiBytes + 1024 +
         2 * TileCfg<BN>::kStages * 8;
}
// Dynamic plus the static epilogue operands (sw_s, bias_s, sx_s) within the 227 KB a CTA may use.
static_assert(smem_bytes<256>() + (2 * 256 + kBM) * 4 <= 227 * 1024 &&
              smem_bytes<128>() + (2 * 128 + kBM) * 4 <= 227 * 1024);

template <int BN, Epi kEpi>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_s8_sm90_kernel(const __grid_constant__ CUtensorMap map_a,
                        const __grid_constant__ CUtensorMap map_w,
                        const __grid_constant__ CUtensorMap map_y,
                        const __grid_constant__ CUtensorMap map_y2, int32_t* c, uint16_t* y,
                        GemmS8Epilogue ep, int m, int n, int k) {
#ifdef SQ_SM90A
  using Cfg = TileCfg<BN>;
  constexpr int kBN = Cfg::kBN, kStages = Cfg::kStages, kStageBytes = Cfg::kStageBytes;
  constexpr bool kScaled = kEpi != Epi::kInt32;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                             ~static_cast<uintptr_t>(1023));
  uint8_t* epi_bufs = smem + kStages * kStageBytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(epi_bufs + kEpiBytes);
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
  // The tile's epilogue operands (per-channel scales and bias of its columns, per-token scales of
  // its 128 rows) are staged in shared memory before the mainloop: read from global memory in the
  // epilogue they stalled it on L1TEX latency (ncu: 39% of the consumers' stall cycles). Each
  // thread loads its share for the next tile into registers while this tile's mainloop runs, so
  // staging costs two barriers and no memory latency.
  __shared__ float sw_s[kBN], bias_s[kBN], sx_s[kBM];
  const int ct = tid - 128;  // 0..255 over the two consumer warpgroups
  float pf_sw = 0.0f, pf_bias = 0.0f, pf_sx = 0.0f;
  auto prefetch_scales = [&](int t) {
    if (t >= tiles) return;
    int tm, tn;
    tile_coords(t, tiles_m, tiles_n, tm, tn);
    const int col = tn * kBN + ct, row = tm * kBM + ct;
    if (ct < kBN) {
      pf_sw = ep.per_channel ? (col < n ? ep.sw[col] : 0.0f) : ep.sw[0];
      pf_bias = ep.bias && col < n ? ep.bias[col] : 0.0f;
    }
    if (ct < kBM) pf_sx = ep.per_token ? (row < m ? ep.sx[row] : 0.0f) : ep.sx[0];
  };
  if constexpr (kScaled) prefetch_scales(blockIdx.x);
  uint8_t* epi_buf = epi_bufs + (cw * 4 + warp) * 2 * kEpiBufBytes;
  int chunk_seq = 0;  // this warp's staged chunks so far: buffer chunk_seq % 2

  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    int tm, tn;
    tile_coords(t, tiles_m, tiles_n, tm, tn);
    if constexpr (kScaled) {
      asm volatile("bar.sync 1, 256;" ::: "memory");  // the previous tile's epilogue is done
      if (ct < kBN) {
        sw_s[ct] = pf_sw;
        bias_s[ct] = pf_bias;
      }
      if (ct < kBM) sx_s[ct] = pf_sx;
      asm volatile("bar.sync 1, 256;" ::: "memory");
      prefetch_scales(t + gridDim.x);
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
    // The CPU epilogue's order: acc · sx · sw + bias, each step rounded to fp32, no FMA.
    auto dqf = [&](int32_t v, float sxr, int lc) {
      float f = __fmul_rn(__fmul_rn(static_cast<float>(v), sxr), sw_s[lc]);
      if (ep.bias) f = __fadd_rn(f, bias_s[lc]);
      return f;
    };
    if constexpr (is_tma(kEpi)) {
      constexpr bool kGlu = kEpi == Epi::kTmaGlu, kF32 = kEpi != Epi::kTmaBf16;
      constexpr int kChunkCols = kF32 ? 16 : 32;  // 64 bytes per row
      constexpr int kOutCols = kGlu ? kBN / 2 : kBN;
      constexpr int kUp = kGluBlock / 8;  // accumulator groups from a gate column to its up
      static_assert(!kGlu || kBN % (2 * kGluBlock) == 0);
      const int lr = lane / 4, lq = lane % 4, row0 = cw * 64 + warp * 16;
      const float sxh[2] = {sx_s[row0 + lr], sx_s[row0 + lr + 8]};
      float rmax[2] = {0.0f, 0.0f};  // kGlu: |SiLU · up| maxima of this thread's two rows
#pragma unroll
      for (int ch = 0; ch < kOutCols / kChunkCols; ++ch, ++chunk_seq) {
        uint8_t* buf = epi_buf + (chunk_seq & 1) * kEpiBufBytes;
        if (lane == 0) bulk_wait_read<1>();  // the store that last read this buffer is done
        __syncwarp();
        // Row R of the chunk, 16-byte unit u: byte R·64 + ((u ^ ((R / 2) % 4)) · 16), the
        // 64-byte swizzle TMA expects; every 8-row matrix store then hits 32 distinct banks.
        if constexpr (kF32) {
#pragma unroll
          for (int jj = 0; jj < 2; ++jj) {
            // Output group 2·ch + jj; with kGlu, its gate's accumulator group: output column o
            // reads gate column (o / 64)·128 + o % 64.
            const int j = kGlu ? (ch / 4) * 16 + 2 * (ch % 4) + jj : 2 * ch + jj;
            const int lc = 8 * j + 2 * lq;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int r = 8 * h + lr, u = 2 * jj + lq / 2;
              float2 v = make_float2(dqf(acc[4 * j + 2 * h], sxh[h], lc),
                                     dqf(acc[4 * j + 2 * h + 1], sxh[h], lc + 1));
              if constexpr (kGlu) {
                const int ju = j + kUp, lu = lc + kGluBlock;
                v.x = silu_mul(v.x, dqf(acc[4 * ju + 2 * h], sxh[h], lu));
                v.y = silu_mul(v.y, dqf(acc[4 * ju + 2 * h + 1], sxh[h], lu + 1));
                rmax[h] = fmaxf(rmax[h], fmaxf(fabsf(v.x), fabsf(v.y)));
              }
              *reinterpret_cast<float2*>(buf + r * 64 + ((u ^ ((r >> 1) & 3)) << 4) +
                                         (lq & 1) * 8) = v;
            }
          }
        } else {
          const int mi = lane / 8, r = 8 * (mi & 1) + lane % 8;
#pragma unroll
          for (int s2 = 0; s2 < 2; ++s2) {
            uint32_t reg[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int h = i & 1, j = 4 * ch + 2 * s2 + (i >> 1), lc = 8 * j + 2 * lq;
              const float f0 = dqf(acc[4 * j + 2 * h], sxh[h], lc);
              const float f1 = dqf(acc[4 * j + 2 * h + 1], sxh[h], lc + 1);
              reg[i] = static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(f0))) |
                       (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(f1))) << 16);
            }
            const int u = 2 * s2 + (mi >> 1);
            stmatrix_x4(smem_u32(buf) + r * 64 + ((u ^ ((r >> 1) & 3)) << 4), reg[0], reg[1],
                        reg[2], reg[3]);
          }
        }
        fence_proxy_async_smem();
        __syncwarp();
        if (lane == 0) {
          const int col = tn * kOutCols + ch * kChunkCols, row = tm * kBM + row0;
          if (!kGlu && kF32 && ep.y2 && col >= ep.y2_col) {
            tma_store_2d(&map_y2, buf, col - static_cast<int>(ep.y2_col), row);
          } else {
            tma_store_2d(&map_y, buf, col, row);
          }
          bulk_commit();
        }
      }
      if constexpr (kGlu) {
        // The row maxima over the 4 lanes that share a row, then one atomic per row and warp
        // (non-negative floats order as their bit patterns).
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          rmax[h] = fmaxf(rmax[h], __shfl_xor_sync(0xffffffffu, rmax[h], 1));
          rmax[h] = fmaxf(rmax[h], __shfl_xor_sync(0xffffffffu, rmax[h], 2));
          const int row = tm * kBM + row0 + 8 * h + lr;
          if (lq == 0 && row < m)
            atomicMax(reinterpret_cast<int*>(ep.row_absmax) + row, __float_as_int(rmax[h]));
        }
      }
    } else {
      const int r_base = tm * kBM + cw * 64 + warp * 16 + lane / 4;
      const int c_base = tn * kBN + 2 * (lane % 4);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = r_base + 8 * h;
        if (row >= m) continue;
        const float sxr = kScaled ? sx_s[row - tm * kBM] : 0.0f;
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) {
          const int col = c_base + 8 * j, lc = col - tn * kBN;
          const int32_t v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
          const int64_t off = static_cast<int64_t>(row) * n + col;
          if constexpr (kScaled) {
            auto dq = [&](int32_t v, int cc) {
              return __bfloat16_as_ushort(__float2bfloat16_rn(dqf(v, sxr, cc)));
            };
            if (ep.f32_out) {
              float* yf = reinterpret_cast<float*>(y);
              if (ep.y2 && col >= ep.y2_col) {  // y2_col is even: the pair stays together
                const int64_t w2 = n - ep.y2_col,
                              o2 = static_cast<int64_t>(row) * w2 + col - ep.y2_col;
                if (col < n) ep.y2[o2] = dqf(v0, sxr, lc);
                if (col + 1 < n) ep.y2[o2 + 1] = dqf(v1, sxr, lc + 1);
              } else if (col + 1 < n && (n % 2) == 0) {
                *reinterpret_cast<float2*>(yf + off) =
                    make_float2(dqf(v0, sxr, lc), dqf(v1, sxr, lc + 1));
              } else {
                if (col < n) yf[off] = dqf(v0, sxr, lc);
                if (col + 1 < n) yf[off + 1] = dqf(v1, sxr, lc + 1);
              }
            } else if (col + 1 < n && (n % 2) == 0) {
              const uint32_t pair = dq(v0, lc) | (static_cast<uint32_t>(dq(v1, lc + 1)) << 16);
              *reinterpret_cast<uint32_t*>(y + off) = pair;
            } else {
              if (col < n) y[off] = dq(v0, lc);
              if (col + 1 < n) y[off + 1] = dq(v1, lc + 1);
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
  }
  // The staging buffers must outlive the TMA reads, and the outputs be written, before exit.
  if constexpr (is_tma(kEpi)) {
    if (lane == 0) bulk_wait_all();
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

// The output y [m, n] (fp32 or bf16, row-major) as a TMA map with 16-row × 64-byte boxes, 64-byte
// swizzle: one consumer warp's staged chunk.
CUtensorMap make_out_map(void* y, int64_t m, int64_t n, bool f32) {
  CUtensorMap map{};
  const int elem = f32 ? 4 : 2;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(n), static_cast<cuuint64_t>(m)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(n * elem)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(64 / elem), 16};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode_fn()(
      &map, f32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, y, dims,
      strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_64B,
      CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("cuTensorMapEncodeTiled failed for the GEMM output (error " +
                             std::to_string(r) + ")");
  return map;
}

template <int BN, Epi kEpi>
void launch_tiles(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y,
                  const GemmS8Epilogue& ep, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  constexpr int kSmem = smem_bytes<BN>();
  const CUtensorMap map_a = make_map(a, m, k, kBM), map_w = make_map(w, n, k, BN);
  CUtensorMap map_y{}, map_y2{};
  if constexpr (is_tma(kEpi))
    map_y = make_out_map(y, m, kEpi == Epi::kTmaGlu ? n / 2 : n, kEpi != Epi::kTmaBf16);
  if constexpr (kEpi == Epi::kTmaF32)
    if (ep.y2) map_y2 = make_out_map(ep.y2, m, n - ep.y2_col, true);
  static std::once_flag once;
  std::call_once(once, [] {
    SQ_CUDA_CHECK(cudaFuncSetAttribute(gemm_s8_sm90_kernel<BN, kEpi>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  });
  const int64_t tiles = ((m + kBM - 1) / kBM) * ((n + BN - 1) / BN);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, sm_count()));
  gemm_s8_sm90_kernel<BN, kEpi><<<grid, kThreads, kSmem, stream>>>(
      map_a, map_w, map_y, map_y2, c, y, ep, static_cast<int>(m), static_cast<int>(n),
      static_cast<int>(k));
  SQ_CUDA_CHECK(cudaGetLastError());
}

// The TMA-store epilogue needs 16-byte aligned rows; SQ_GEMM_EPILOGUE=direct forces the register
// stores (A/B measurements).
template <int BN>
void launch_scaled(const int8_t* a, const int8_t* w, uint16_t* y, const GemmS8Epilogue& ep,
                   int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  static const bool direct = [] {
    const char* e = std::getenv("SQ_GEMM_EPILOGUE");
    return e != nullptr && std::string(e) == "direct";
  }();
  const int64_t row_bytes = n * (ep.f32_out ? 4 : 2);
  const bool y2_ok = !ep.y2 || (aligned(ep.y2, 16) && ((n - ep.y2_col) * 4) % 16 == 0);
  if (direct || row_bytes % 16 != 0 || !aligned(y, 16) || !y2_ok)
    return launch_tiles<BN, Epi::kDirect>(a, w, nullptr, y, ep, m, n, k, stream);
  if (ep.f32_out) return launch_tiles<BN, Epi::kTmaF32>(a, w, nullptr, y, ep, m, n, k, stream);
  launch_tiles<BN, Epi::kTmaBf16>(a, w, nullptr, y, ep, m, n, k, stream);
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

void check_k(int64_t k) {
  if (k <= 0 || k % 16 != 0)
    throw std::runtime_error("CUDA INT8 GEMM: K = " + std::to_string(k) +
                             " must be a positive multiple of 16");
}

// What the tiled (M > kGemvMaxRows) kernel needs of the device and the shape.
void check_tiled(int64_t m, int64_t n, int64_t k) {
  if (!gemm_s8_supported())
    throw std::runtime_error("the CUDA INT8 GEMM needs a Hopper GPU (sm_90) for M > 16");
  if (m > INT32_MAX / 2 || n > INT32_MAX / 2 || k > INT32_MAX / 2)
    throw std::runtime_error("CUDA INT8 GEMM: dimensions beyond 2^30");
}

template <bool kBf16Out>
void launch(const int8_t* a, const int8_t* w, int32_t* c, uint16_t* y, const GemmS8Epilogue& ep,
            int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  check_k(k);
  if (m <= 0 || n <= 0) return;
  if (ep.y2 &&
      (!ep.f32_out || m <= kGemvMaxRows || ep.y2_col % 64 != 0 || ep.y2_col <= 0 || ep.y2_col >= n))
    throw std::runtime_error(
        "CUDA INT8 GEMM: a second output (y2) needs the fp32 epilogue, M > 16 and a split column "
        "that is a positive multiple of 64 below N");
  if (m <= kGemvMaxRows) return gemv_s8(a, w, c, y, ep, m, n, k, stream);
  check_tiled(m, n, k);
  const bool narrow = pick_tile(m, n) == GemmTileN::k128;
  if constexpr (kBf16Out) {
    if (narrow) return launch_scaled<128>(a, w, y, ep, m, n, k, stream);
    return launch_scaled<256>(a, w, y, ep, m, n, k, stream);
  } else {
    if (narrow) return launch_tiles<128, Epi::kInt32>(a, w, c, y, ep, m, n, k, stream);
    launch_tiles<256, Epi::kInt32>(a, w, c, y, ep, m, n, k, stream);
  }
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

void gemm_s8_silu_f32(const int8_t* a, const int8_t* w, const GemmS8Epilogue& ep, float* y,
                      int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const std::string shape = " (M = " + std::to_string(m) + ", N = " + std::to_string(n) + ")";
  if (m <= kGemvMaxRows)
    throw std::runtime_error("gemm_s8_silu_f32: decode-sized M runs the GEMV" + shape);
  if (n % (2 * kGluBlock) != 0)
    throw std::runtime_error("gemm_s8_silu_f32: N must be a multiple of 128" + shape);
  if (!aligned(y, 16))
    throw std::runtime_error("gemm_s8_silu_f32: the output must be 16-byte aligned");
  check_k(k);
  check_tiled(m, n, k);
  if (!ep.row_absmax || ep.y2)
    throw std::runtime_error("gemm_s8_silu_f32: needs row_absmax and no second output");
  SQ_CUDA_CHECK(cudaMemsetAsync(ep.row_absmax, 0, m * sizeof(float), stream));
  GemmS8Epilogue e = ep;
  e.f32_out = true;
  uint16_t* yb = reinterpret_cast<uint16_t*>(y);
  if (pick_tile(m, n) == GemmTileN::k128)
    return launch_tiles<128, Epi::kTmaGlu>(a, w, nullptr, yb, e, m, n, k, stream);
  launch_tiles<256, Epi::kTmaGlu>(a, w, nullptr, yb, e, m, n, k, stream);
}

}  // namespace sq::cuda
