#include "quant/fake_quant.h"

#include <algorithm>

#include "core/error.h"
#include "ops/ops.h"
#include "quant/calibrate.h"
#include "quant/int8_linear.h"
#include "quant/quantizer.h"

namespace sq {
namespace {

bool is_qkv(LinearRole r) {
  return r == LinearRole::kQ || r == LinearRole::kK || r == LinearRole::kV;
}

}  // namespace

FakeQuantExecutor::FakeQuantExecutor(QuantConfig cfg, const ActStats* static_stats)
    : cfg_(cfg), spec_(scheme_spec(cfg.scheme)) {
  if (spec_.act == ActGranularity::kPerTensorStatic) {
    SQ_CHECK(static_stats != nullptr && static_stats->has_output_stats(),
             "scheme o3 needs static activation scales: pass --calib-text (they are calibrated on "
             "the smoothed model)");
    for (const auto& [name, s] : static_stats->linears()) {
      static_scales_[name] = {quant::scale_from_absmax(s.input_absmax),
                              quant::scale_from_absmax(s.output_absmax)};
    }
  }
}

void FakeQuantExecutor::run(int, const Linear& lin, const float* x, float* y, int64_t m,
                            const QuantizedInput*) const {
  std::vector<float> xq(x, x + m * lin.in);
  const std::pair<float, float>* st = nullptr;
  if (spec_.act == ActGranularity::kPerTensorStatic) {
    auto it = static_scales_.find(lin.name);
    SQ_CHECK(it != static_scales_.end(),
             "no static scale for '{}'; re-run calibration on this model", lin.name);
    st = &it->second;
  }
  auto quantize = [&](float* v, int64_t rows, int64_t cols, float static_scale) {
    switch (spec_.act) {
      case ActGranularity::kPerTokenDynamic:
        quant::fake_quant_per_token(v, rows, cols);
        break;
      case ActGranularity::kPerTensorDynamic:
        quant::fake_quant_per_tensor(v, rows, cols);
        break;
      case ActGranularity::kPerTensorStatic:
        quant::fake_quant_static(v, rows * cols, static_scale);
        break;
    }
  };
  quantize(xq.data(), m, lin.in, st ? st->first : 0.0f);
  ops::linear_f32(xq.data(), lin.weight.data(), lin.bias.empty() ? nullptr : lin.bias.data(), y, m,
                  lin.out, lin.in);
  if (cfg_.quant_bmm && is_qkv(lin.role)) quantize(y, m, lin.out, st ? st->second : 0.0f);
}

void fake_quantize_weights(ModelWeights& w, WeightGranularity g) {
  for_each_linear(w, [&](int, Linear& lin) {
    quant::fake_quant_weight(lin.weight.mutable_data(), lin.out, lin.in,
                             g == WeightGranularity::kPerChannel);
  });
}

QuantModel build_quant_model(const Model& fp, const QuantSetup& setup, const ActStats* act_stats,
                             const CalibSet* calib, const std::string& stats_source) {
  QuantModel q;
  q.model = std::make_unique<Model>(fp);  // shares FP storage until a weight is modified
  ModelWeights& w = q.model->mutable_weights();
  const bool smooth = setup.alpha.has_value() || !setup.per_group_alpha.empty();
  if (smooth) {
    SQ_CHECK(act_stats != nullptr, "smoothing needs act scales: pass --act-scales or --calib-text");
    const auto& pga = setup.per_group_alpha;
    const size_t n_groups = descriptor_for(fp.config().arch).smooth_groups.size();
    q.smoothing = smooth_model(
        w, fp.config(), *act_stats,
        [&](int layer, int group) {
          return pga.empty() ? *setup.alpha : pga.at(static_cast<size_t>(layer) * n_groups + group);
        },
        stats_source);
  }
  std::optional<ActStats> static_stats;
  if (scheme_spec(setup.quant.scheme).act == ActGranularity::kPerTensorStatic) {
    SQ_CHECK(calib != nullptr,
             "scheme o3 needs --calib-text: its static scales come from a pass over the smoothed "
             "model");
    static_stats =
        setup.calibrator ? setup.calibrator(*q.model, *calib) : calibrate(*q.model, *calib);
  }
  const SchemeSpec spec = scheme_spec(setup.quant.scheme);
  const ActStats* st = static_stats ? &*static_stats : nullptr;
  if (setup.quant.mode == QuantMode::kInt8) {
    q.executor =
        std::make_unique<Int8Executor>(w, spec.weight, spec.act, setup.quant.quant_bmm, st);
    if (!setup.keep_fp_weights)
      for_each_linear(w, [](int, Linear& lin) { lin.weight = FloatBuffer(); });
  } else {
    fake_quantize_weights(w, spec.weight);
    q.executor = std::make_unique<FakeQuantExecutor>(setup.quant, st);
  }
  return q;
}

}  // namespace sq
