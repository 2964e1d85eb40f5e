#include "quant/alpha_search.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "ops/ops.h"
#include "quant/quantizer.h"
#include "quant/smooth.h"

namespace sq {
namespace {

// Captures the inputs of the first Linear of each group (the norm's output).
class GroupInputCapture : public LinearObserver {
 public:
  explicit GroupInputCapture(std::map<std::string, std::vector<float>>& rows, int64_t stride)
      : rows_(rows), stride_(stride) {}
  void observe(int, const Linear& lin, const float* x, const float*, int64_t m) override {
    auto it = rows_.find(lin.name);
    if (it == rows_.end()) return;
    for (int64_t t = 0; t < m; ++t, ++seen_[lin.name]) {
      if (seen_[lin.name] % stride_ == 0)
        it->second.insert(it->second.end(), x + t * lin.in, x + (t + 1) * lin.in);
    }
  }

 private:
  std::map<std::string, std::vector<float>>& rows_;
  std::map<std::string, int64_t> seen_;
  int64_t stride_;
};

void quantize_act(std::vector<float>& x, int64_t m, int64_t k, ActGranularity g,
                  const std::vector<float>& static_absmax_cols) {
  switch (g) {
    case ActGranularity::kPerTokenDynamic:
      quant::fake_quant_per_token(x.data(), m, k);
      break;
    case ActGranularity::kPerTensorDynamic:
      quant::fake_quant_per_tensor(x.data(), m, k);
      break;
    case ActGranularity::kPerTensorStatic: {
      float mx = 0;
      for (float v : static_absmax_cols) mx = std::max(mx, v);
      quant::fake_quant_static(x.data(), m * k, quant::scale_from_absmax(mx));
      break;
    }
  }
}

}  // namespace

std::vector<AlphaChoice> search_alpha(const Model& fp, const ActStats& stats, const CalibSet& calib,
                                      Scheme scheme, const AlphaSearchOptions& opt,
                                      const std::string& stats_source) {
  SQ_CHECK(opt.step > 0 && opt.step <= 1, "alpha search step must be in (0, 1]");
  const SchemeSpec spec = scheme_spec(scheme);
  Model work = fp;  // group refs need mutable weights; nothing is modified
  auto groups = smoothing_groups(work.mutable_weights(), fp.config());

  std::map<std::string, std::vector<float>> rows;
  for (const auto& g : groups) rows[g.linears.front()->name];
  const int64_t stride = std::max<int64_t>(1, calib.tokens / std::max<int64_t>(1, opt.max_tokens));
  {
    GroupInputCapture cap(rows, stride);
    int64_t longest = 1;
    for (const auto& d : calib.docs)
      longest = std::max<int64_t>(longest, static_cast<int64_t>(d.size()));
    KvCache cache(fp.config(), longest);
    std::vector<float> logits;
    for (const auto& d : calib.docs) {
      cache.clear();
      fp.forward(d, cache, logits, {.observer = &cap, .last_logits_only = true});
    }
  }

  std::vector<float> grid;
  for (int i = 0;; ++i) {
    const float a = std::min(1.0f, static_cast<float>(i) * opt.step);
    grid.push_back(a);
    if (a >= 1.0f) break;
  }
  std::vector<AlphaChoice> out;
  Progress progress("alpha search", static_cast<int64_t>(groups.size()), "groups");
  for (const GroupRef& g : groups) {
    const Linear& first = *g.linears.front();
    const std::vector<float>& x = rows[first.name];
    const int64_t k = first.in, m = static_cast<int64_t>(x.size()) / k;
    SQ_CHECK(m > 0, "alpha search: no calibration tokens reached {}", first.name);
    const auto& act = stats.get(first.name, k, stats_source).channel_absmax;
    std::vector<const Linear*> lins(g.linears.begin(), g.linears.end());
    // FP reference outputs, computed once per Linear.
    std::vector<std::vector<float>> ref(lins.size());
    std::vector<double> ref_norm(lins.size(), 0.0);
    for (size_t i = 0; i < lins.size(); ++i) {
      ref[i].resize(static_cast<size_t>(m * lins[i]->out));
      ops::linear_f32(x.data(), lins[i]->weight.data(), nullptr, ref[i].data(), m, lins[i]->out, k);
      for (float v : ref[i]) ref_norm[i] += static_cast<double>(v) * v;
    }
    auto error_at = [&](float alpha) {
      const auto s = smoothing_factors(act, lins, alpha);
      std::vector<float> xs(x.size());
      for (int64_t t = 0; t < m; ++t) {
        for (int64_t j = 0; j < k; ++j) xs[t * k + j] = x[t * k + j] / s[j];
      }
      std::vector<float> act_s(act.size());
      for (int64_t j = 0; j < k; ++j) act_s[j] = act[j] / s[j];
      quantize_act(xs, m, k, spec.act, act_s);
      double err = 0;
      std::vector<float> w, y;
      for (size_t i = 0; i < lins.size(); ++i) {
        const Linear& l = *lins[i];
        w.assign(l.weight.data(), l.weight.data() + l.out * l.in);
        for (int64_t o = 0; o < l.out; ++o) {
          for (int64_t j = 0; j < k; ++j) w[o * k + j] *= s[j];
        }
        quant::fake_quant_weight(w.data(), l.out, k, spec.weight == WeightGranularity::kPerChannel);
        y.resize(static_cast<size_t>(m * l.out));
        ops::linear_f32(xs.data(), w.data(), nullptr, y.data(), m, l.out, k);
        double e = 0;
        for (size_t j = 0; j < y.size(); ++j) {
          const double d = static_cast<double>(y[j]) - ref[i][j];
          e += d * d;
        }
        err += e / std::max(ref_norm[i], 1e-30);
      }
      return err;
    };
    AlphaChoice c;
    c.layer = g.layer;
    c.group = g.group;
    c.norm = g.norm->name;
    c.error = INFINITY;
    for (float a : grid) {
      const double e = error_at(a);
      if (e < c.error) {
        c.error = e;
        c.alpha = a;
      }
    }
    c.error_default = error_at(opt.fallback_alpha);
    out.push_back(c);
    progress.add(1);
  }
  progress.done();
  return out;
}

}  // namespace sq
