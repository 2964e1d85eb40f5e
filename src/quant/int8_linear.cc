#include "quant/int8_linear.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "quant/quantizer.h"

namespace sq {

Int8Executor::Int8Executor(const ModelWeights& w, WeightGranularity weight, ActGranularity act,
                           bool quant_bmm, const ActStats* static_stats)
    : act_(act), quant_bmm_(quant_bmm), isa_(cpu::best_isa()) {
  if (act == ActGranularity::kPerTensorStatic && static_stats) {
    SQ_CHECK(static_stats->has_output_stats(),
             "static activation scales need per-tensor statistics; re-run calibration");
  }
  for_each_linear(w, [&](int, const Linear& lin) {
    Entry e;
    e.per_channel = weight == WeightGranularity::kPerChannel;
    if (lin.int8) {
      e.packed = cpu::PackedS8::pack(lin.int8->data, lin.out, lin.in, isa_);
      e.w_scales = lin.int8->scales;
      e.per_channel = e.w_scales.size() > 1 || lin.out == 1;
      if (lin.int8->input_scale) e.in_scale = *lin.int8->input_scale;
    } else {
      SQ_CHECK(!lin.weight.empty(), "internal error: Linear {} has no weights", lin.name);
      std::vector<int8_t> q(static_cast<size_t>(lin.out * lin.in));
      e.w_scales.resize(e.per_channel ? static_cast<size_t>(lin.out) : 1);
      if (e.per_channel) {
        quant::quantize_weight_per_channel(lin.weight.data(), lin.out, lin.in, q.data(),
                                           e.w_scales.data());
      } else {
        quant::quantize_weight_per_tensor(lin.weight.data(), lin.out, lin.in, q.data(),
                                          e.w_scales.data());
      }
      e.packed = cpu::PackedS8::pack(q.data(), lin.out, lin.in, isa_);
    }
    if (act == ActGranularity::kPerTensorStatic) {
      if (static_stats) {
        const LinearStats& s = static_stats->get(lin.name, lin.in, "static scales");
        e.in_scale = quant::scale_from_absmax(s.input_absmax);
        e.out_scale = quant::scale_from_absmax(s.output_absmax);
      }
      SQ_CHECK(e.in_scale > 0,
               "Linear {} has no static activation scale: o3 needs --calib-text (or an INT8 "
               "checkpoint with input_scale)",
               lin.name);
    }
    entries_.emplace(lin.name, std::move(e));
  });
}

Int8Executor::Exported Int8Executor::export_linear(const Linear& lin) const {
  const Entry& e = entry(lin);
  Exported x;
  x.in_scale = e.in_scale;
  x.out_scale = e.out_scale;
  const size_t n = static_cast<size_t>(lin.out * lin.in);
  if (lin.int8) {
    x.w.assign(lin.int8->data, lin.int8->data + n);
  } else {
    SQ_CHECK(!lin.weight.empty(),
             "{}: its fp32 weights were released; build the model with fp32 weights kept",
             lin.name);
    x.w.resize(n);
    std::vector<float> s(e.per_channel ? static_cast<size_t>(lin.out) : 1);
    if (e.per_channel) {
      quant::quantize_weight_per_channel(lin.weight.data(), lin.out, lin.in, x.w.data(), s.data());
    } else {
      quant::quantize_weight_per_tensor(lin.weight.data(), lin.out, lin.in, x.w.data(), s.data());
    }
  }
  x.scales = e.w_scales;
  if (x.scales.size() == 1) x.scales.assign(static_cast<size_t>(lin.out), e.w_scales[0]);
  return x;
}

size_t Int8Executor::weight_bytes() const {
  size_t b = 0;
  for (const auto& [n, e] : entries_) b += e.packed.bytes() + e.w_scales.size() * sizeof(float);
  return b;
}

const Int8Executor::Entry& Int8Executor::entry(const Linear& lin) const {
  auto it = entries_.find(lin.name);
  SQ_CHECK(it != entries_.end(), "internal error: no INT8 weights for {}", lin.name);
  return it->second;
}

void Int8Executor::gemm(const Entry& e, const Linear& lin, const float* x,
                        const QuantizedInput* pre, float* y, int64_t m) const {
  cpu::Epilogue ep;
  ep.sw = e.w_scales.data();
  ep.per_channel = e.per_channel;
  ep.bias = lin.bias.empty() ? nullptr : lin.bias.data();
  if (pre && act_ == ActGranularity::kPerTokenDynamic) {
    ep.sx = pre->scales;
    ep.per_token = true;
    cpu::gemm_s8_f32(pre->q, m, lin.in, e.packed, ep, y);
    return;
  }
  thread_local std::vector<int8_t> qx;
  thread_local std::vector<float> sx;
  qx.resize(static_cast<size_t>(m * lin.in));
  switch (act_) {
    case ActGranularity::kPerTokenDynamic:
      sx.resize(static_cast<size_t>(m));
      cpu::quantize_s8_per_token(x, m, lin.in, qx.data(), sx.data());
      ep.per_token = true;
      break;
    case ActGranularity::kPerTensorDynamic:
      sx.assign(1, quant::scale_from_absmax(quant::absmax(x, m * lin.in)));
      cpu::quantize_s8_with_scale(x, m * lin.in, sx[0], qx.data());
      break;
    case ActGranularity::kPerTensorStatic:
      sx.assign(1, e.in_scale);
      cpu::quantize_s8_with_scale(x, m * lin.in, sx[0], qx.data());
      break;
  }
  ep.sx = sx.data();
  cpu::gemm_s8_f32(qx.data(), m, lin.in, e.packed, ep, y);
}

void Int8Executor::quantize_output(const Entry& e, const Linear& lin, const float* y, int64_t m,
                                   int8_t* q, float* row_scales) const {
  // The same quantizers as the Linear inputs (bit-identical to NUMERICS §1 and to the fake path).
  const int64_t n = lin.out;
  if (act_ == ActGranularity::kPerTokenDynamic) {
    cpu::quantize_s8_per_token(y, m, n, q, row_scales);
    return;
  }
  float s = e.out_scale;
  if (act_ == ActGranularity::kPerTensorDynamic) {
    s = quant::scale_from_absmax(quant::absmax(y, m * n));
  } else {
    SQ_CHECK(s > 0, "--quant-bmm with o3 needs static output scales of {}", lin.name);
  }
  std::fill(row_scales, row_scales + m, s);
  cpu::quantize_s8_with_scale(y, m * n, s, q);
}

void Int8Executor::run(int, const Linear& lin, const float* x, float* y, int64_t m,
                       const QuantizedInput* qx) const {
  const Entry& e = entry(lin);
  gemm(e, lin, x, qx, y, m);
  const bool qkv =
      lin.role == LinearRole::kQ || lin.role == LinearRole::kK || lin.role == LinearRole::kV;
  if (quant_bmm_ && qkv) {
    thread_local std::vector<int8_t> q;
    thread_local std::vector<float> s;
    q.resize(static_cast<size_t>(m * lin.out));
    s.resize(static_cast<size_t>(m));
    quantize_output(e, lin, y, m, q.data(), s.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < lin.out; ++j)
        y[i * lin.out + j] = static_cast<float>(q[i * lin.out + j]) * s[i];
  }
}

void Int8Executor::run_to_int8(int, const Linear& lin, const float* x, int64_t m, int8_t* q,
                               float* row_scales, const QuantizedInput* qx) const {
  SQ_CHECK(quant_bmm_, "internal error: int8 outputs need --quant-bmm ({})", lin.name);
  const Entry& e = entry(lin);
  thread_local std::vector<float> y;
  y.resize(static_cast<size_t>(m * lin.out));
  gemm(e, lin, x, qx, y.data(), m);
  quantize_output(e, lin, y.data(), m, q, row_scales);
}

LoadedModel load_model(const std::filesystem::path& dir) {
  LoadedModel m;
  m.model = std::make_unique<Model>(Model::load(dir));
  if (const auto& q = m.model->config().quant) {
    m.executor =
        std::make_unique<Int8Executor>(m.model->weights(), q->weight, q->act, false, nullptr);
  }
  return m;
}

}  // namespace sq
