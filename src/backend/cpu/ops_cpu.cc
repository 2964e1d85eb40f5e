// CPU implementation of src/ops/ops.h: OpenBLAS for the Linears, plain loops (auto-vectorized,
// fp32, no fast-math) for the rest. Loops are parallel over rows or heads; each output element is
// computed by one thread in a fixed order, so results do not depend on the thread count.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/gemm_s8.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace sq::ops {

void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                int64_t k) {
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, w,
                static_cast<int>(k), x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, y,
                static_cast<int>(n));
  }
  if (bias) {
    for (int64_t i = 0; i < m; ++i) {
      float* row = y + i * n;
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
    }
  }
}

namespace {

void rms_norm_row(const float* xr, const float* weight, float eps, float* yr, int64_t d) {
  float ss = 0.0f;
  for (int64_t j = 0; j < d; ++j) ss += xr[j] * xr[j];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
  for (int64_t j = 0; j < d; ++j) yr[j] = weight[j] * (xr[j] * inv);
}

void layer_norm_row(const float* xr, const float* weight, const float* bias, float eps, float* yr,
                    int64_t d) {
  float mean = 0.0f;
  for (int64_t j = 0; j < d; ++j) mean += xr[j];
  mean /= static_cast<float>(d);
  float var = 0.0f;
  for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
  var /= static_cast<float>(d);
  const float inv = 1.0f / std::sqrt(var + eps);
  for (int64_t j = 0; j < d; ++j)
    yr[j] = (xr[j] - mean) * inv * weight[j] + (bias ? bias[j] : 0.0f);
}

}  // namespace

void rms_norm(const float* x, const float* weight, float eps, float* y, int64_t m, int64_t d) {
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) rms_norm_row(x + i * d, weight, eps, y + i * d, d);
      },
      16);
}

void layer_norm(const float* x, const float* weight, const float* bias, float eps, float* y,
                int64_t m, int64_t d) {
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) layer_norm_row(x + i * d, weight, bias, eps, y + i * d, d);
      },
      16);
}

void rms_norm_q8(const float* x, const float* weight, float eps, float* y, int8_t* q, float* scales,
                 int64_t m, int64_t d) {
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          rms_norm_row(x + i * d, weight, eps, y + i * d, d);
          cpu::quantize_s8_row(y + i * d, d, q + i * d, scales + i);
        }
      },
      16);
}

void layer_norm_q8(const float* x, const float* weight, const float* bias, float eps, float* y,
                   int8_t* q, float* scales, int64_t m, int64_t d) {
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          layer_norm_row(x + i * d, weight, bias, eps, y + i * d, d);
          cpu::quantize_s8_row(y + i * d, d, q + i * d, scales + i);
        }
      },
      16);
}

void rope(float* x, int64_t m, int64_t n_heads, int64_t head_dim, int64_t pos0,
          const float* inv_freq) {
  const int64_t half = head_dim / 2;
  parallel_for(
      m,
      [&](int64_t b, int64_t e) {
        std::vector<float> c(half), s(half);
        for (int64_t t = b; t < e; ++t) {
          const float pos = static_cast<float>(pos0 + t);
          for (int64_t i = 0; i < half; ++i) {
            const float f = pos * inv_freq[i];  // fp32 product, as HF's fp32 matmul of K = 1
            c[i] = std::cos(f);
            s[i] = std::sin(f);
          }
          for (int64_t h = 0; h < n_heads; ++h) {
            float* v = x + t * n_heads * head_dim + h * head_dim;
            for (int64_t i = 0; i < half; ++i) {
              const float a = v[i], bb = v[i + half];
              v[i] = a * c[i] - bb * s[i];
              v[i + half] = bb * c[i] + a * s[i];
            }
          }
        }
      },
      4);
}

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t m,
               int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale) {
  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_stride = n_heads * head_dim, kv_stride = n_kv_heads * head_dim;
  const int64_t n_keys_max = pos0 + m;
  parallel_for(n_heads * m, [&](int64_t b, int64_t e) {
    std::vector<float> p(static_cast<size_t>(n_keys_max));
    for (int64_t idx = b; idx < e; ++idx) {
      const int64_t h = idx / m, t = idx % m;
      const int64_t kvh = h / group;
      const float* qv = q + t * q_stride + h * head_dim;
      const int64_t n_keys = pos0 + t + 1;  // causal: keys 0 .. pos0+t
      float mx = -INFINITY;
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* kv = k_cache + j * kv_stride + kvh * head_dim;
        float dot = 0.0f;
        for (int64_t d = 0; d < head_dim; ++d) dot += qv[d] * kv[d];
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < n_keys; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float inv = 1.0f / sum;
      float* o = out + t * q_stride + h * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t j = 0; j < n_keys; ++j) {
        const float pj = p[j] * inv;
        const float* vv = v_cache + j * kv_stride + kvh * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) o[d] += pj * vv[d];
      }
    }
  });
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float g = gate[i];
          out[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
      },
      4096);
}

void relu_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::max(x[i], 0.0f);
}

void gelu_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace sq::ops
