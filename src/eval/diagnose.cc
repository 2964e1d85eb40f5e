#include "eval/diagnose.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace sq {
namespace {

// Keeps the FP outputs of every Linear of one pass.
class OutputRecorder : public LinearObserver {
 public:
  void observe(int, const Linear& lin, const float*, const float* y, int64_t m) override {
    if (lin.name == "lm_head") return;
    outputs[lin.name].assign(y, y + m * lin.out);
  }
  std::map<std::string, std::vector<float>> outputs;
};

// Compares the quantized model's Linear outputs with the recorded FP ones.
class ErrorMeter : public LinearObserver {
 public:
  explicit ErrorMeter(const OutputRecorder& ref) : ref_(ref) {}
  void observe(int layer, const Linear& lin, const float*, const float* y, int64_t m) override {
    auto it = ref_.outputs.find(lin.name);
    if (it == ref_.outputs.end()) return;
    double num = 0, den = 0;
    for (int64_t i = 0; i < m * lin.out; ++i) {
      const double d = static_cast<double>(y[i]) - it->second[i];
      num += d * d;
      den += static_cast<double>(it->second[i]) * it->second[i];
    }
    result[lin.name] = {lin.name, layer, std::sqrt(num / std::max(den, 1e-30)), 0.0};
  }
  std::map<std::string, LinearError> result;

 private:
  const OutputRecorder& ref_;
};

}  // namespace

double outlier_ratio(std::vector<float> v) {
  if (v.empty()) return 0;
  const float mx = *std::max_element(v.begin(), v.end());
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double med = n % 2 ? v[n / 2] : 0.5 * (static_cast<double>(v[n / 2 - 1]) + v[n / 2]);
  return med > 0 ? mx / med : INFINITY;
}

Diagnosis diagnose(const Model& fp, const QuantModel& q, const ActStats& stats,
                   std::span<const int32_t> tokens) {
  SQ_CHECK(!tokens.empty(), "diagnose: no tokens");
  Diagnosis d;
  d.tokens = static_cast<int64_t>(tokens.size());
  OutputRecorder rec;
  std::vector<float> logits;
  {
    KvCache cache(fp.config(), d.tokens);
    fp.forward(tokens, cache, logits, {.observer = &rec});
  }
  ErrorMeter meter(rec);
  {
    KvCache cache(fp.config(), d.tokens);
    ForwardOptions fo = q.forward_options();
    fo.observer = &meter;
    q.model->forward(tokens, cache, logits, fo);
  }
  for (auto& [name, e] : meter.result) {
    auto it = stats.linears().find(name);
    if (it != stats.linears().end())
      e.input_absmax_ratio = outlier_ratio(it->second.channel_absmax);
    d.linears.push_back(e);
  }
  std::sort(d.linears.begin(), d.linears.end(),
            [](const LinearError& a, const LinearError& b) { return a.rel_error > b.rel_error; });

  // Outliers per group: the act scale of the group's first Linear, before and after division by s.
  Model probe = fp;
  auto groups = smoothing_groups(probe.mutable_weights(), fp.config());
  for (size_t i = 0; i < groups.size(); ++i) {
    const Linear& first = *groups[i].linears.front();
    const auto& act = stats.get(first.name, first.in, "act scales").channel_absmax;
    GroupOutliers g;
    g.norm = groups[i].norm->name;
    g.consumer = first.name;
    g.ratio_before = outlier_ratio(act);
    g.ratio_after = g.ratio_before;
    if (i < q.smoothing.size()) {
      std::vector<float> after(act.size());
      for (size_t j = 0; j < act.size(); ++j) after[j] = act[j] / q.smoothing[i].s[j];
      g.ratio_after = outlier_ratio(after);
      g.alpha = q.smoothing[i].alpha;
    }
    d.groups.push_back(g);
  }
  return d;
}

}  // namespace sq
