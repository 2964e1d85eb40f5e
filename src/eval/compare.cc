#include "eval/compare.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sq {

double kl_divergence(const float* p, const float* q, int64_t vocab) {
  double pm = p[0], qm = q[0];
  for (int64_t v = 1; v < vocab; ++v) {
    pm = std::max(pm, static_cast<double>(p[v]));
    qm = std::max(qm, static_cast<double>(q[v]));
  }
  double ps = 0, qs = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    ps += std::exp(p[v] - pm);
    qs += std::exp(q[v] - qm);
  }
  const double plse = pm + std::log(ps), qlse = qm + std::log(qs);
  double kl = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double lp = p[v] - plse, lq = q[v] - qlse;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(kl, 0.0);
}

void DistComparison::add(const float* ref, const float* q, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = ref + r * vocab;
    const float* b = q + r * vocab;
    const double kl = kl_divergence(a, b, vocab);
    kl_sum_ += kl;
    kl_max_ = std::max(kl_max_, kl);
    agree_ += (std::max_element(a, a + vocab) - a) == (std::max_element(b, b + vocab) - b);
    ++n_;
  }
}

namespace {

// Window by window: the reference's logits for the window the quantized model just ran.
template <typename RunQuant, typename RunFp>
QuantEvalResult compare_windows(int64_t vocab, RunQuant run_quant, RunFp run_fp) {
  QuantEvalResult r;
  DistComparison cmp;
  std::vector<float> fp_logits;
  r.quant = run_quant([&](int64_t, std::span<const int32_t> win, const std::vector<float>& logits) {
    run_fp(win, fp_logits);
    r.fp.window_nll.push_back(window_nll(fp_logits.data(), win, vocab));
    r.fp.nll_sum += r.fp.window_nll.back();
    r.fp.n_predicted += static_cast<int64_t>(win.size()) - 1;
    cmp.add(fp_logits.data(), logits.data(), static_cast<int64_t>(win.size()), vocab);
  });
  r.fp.n_windows = r.quant.n_windows;
  r.fp.ctx = r.quant.ctx;
  r.fp.ppl = std::exp(r.fp.nll_sum / static_cast<double>(std::max<int64_t>(1, r.fp.n_predicted)));
  r.kl_mean = cmp.kl_mean();
  r.kl_max = cmp.kl_max();
  r.top1 = cmp.top1();
  return r;
}

}  // namespace

QuantEvalResult evaluate_against_fp(const Model& fp, const Model& q, const ForwardOptions& q_fwd,
                                    std::span<const int32_t> ids, const PerplexityOptions& opt) {
  KvCache cache(fp.config(), opt.ctx);
  return compare_windows(
      fp.config().vocab_size,
      [&](const WindowFn& fn) { return perplexity(q, ids, opt, q_fwd, fn); },
      [&](std::span<const int32_t> win, std::vector<float>& out) {
        cache.clear();
        fp.forward(win, cache, out);
      });
}

QuantEvalResult evaluate_against_fp(DeviceEngine& fp, DeviceEngine& q, const ModelConfig& cfg,
                                    std::span<const int32_t> ids, const PerplexityOptions& opt,
                                    const WindowFn& on_window) {
  return compare_windows(
      cfg.vocab_size,
      [&](const WindowFn& fn) {
        return perplexity(
            q, cfg, ids, opt,
            [&](int64_t w, std::span<const int32_t> win, const std::vector<float>& logits) {
              fn(w, win, logits);
              if (on_window) on_window(w, win, logits);
            });
      },
      [&](std::span<const int32_t> win, std::vector<float>& out) {
        fp.reset(static_cast<int64_t>(win.size()));
        fp.forward(win.data(), static_cast<int64_t>(win.size()), out, false);
      });
}

}  // namespace sq
