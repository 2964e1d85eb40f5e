#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"

namespace sq {

int64_t count_windows(int64_t n_tokens, const PerplexityOptions& opt) {
  int64_t w = opt.ctx > 0 ? n_tokens / opt.ctx : 0;
  if (opt.max_windows > 0) w = std::min(w, opt.max_windows);
  return w;
}

double window_nll(const float* logits, std::span<const int32_t> ids, int64_t vocab) {
  double nll = 0.0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    const float* row = logits + static_cast<int64_t>(t) * vocab;
    double mx = row[0];
    for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    nll += (mx + std::log(sum)) - static_cast<double>(row[ids[t + 1]]);
  }
  return nll;
}

namespace {

// The protocol, over any forward: run(window, logits) fills [ctx, vocab] for one window run alone.
template <typename Run>
PerplexityResult run_windows(const ModelConfig& cfg, std::span<const int32_t> ids,
                             const PerplexityOptions& opt, const WindowFn& on_window, Run run) {
  SQ_CHECK(opt.ctx >= 2, "--ctx must be at least 2 (got {})", opt.ctx);
  SQ_CHECK(opt.ctx <= cfg.max_positions,
           "--ctx {} is beyond the model's {} positions (max_position_embeddings); use --ctx {} or "
           "less",
           opt.ctx, cfg.max_positions, cfg.max_positions);
  const int64_t n_windows = count_windows(static_cast<int64_t>(ids.size()), opt);
  SQ_CHECK(n_windows > 0,
           "the text has {} tokens, fewer than one window of --ctx {}; use a longer text or a "
           "smaller --ctx",
           ids.size(), opt.ctx);
  PerplexityResult r;
  r.ctx = opt.ctx;
  r.n_windows = n_windows;
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> logits;
  Progress progress("perplexity", n_windows * opt.ctx, "tokens");
  for (int64_t w = 0; w < n_windows; ++w) {
    const auto win = ids.subspan(static_cast<size_t>(w * opt.ctx), static_cast<size_t>(opt.ctx));
    run(win, logits);
    const double nll = window_nll(logits.data(), win, cfg.vocab_size);
    r.window_nll.push_back(nll);
    r.nll_sum += nll;
    r.n_predicted += opt.ctx - 1;
    if (on_window) on_window(w, win, logits);
    progress.add(opt.ctx);
  }
  progress.done();
  r.ppl = std::exp(r.nll_sum / static_cast<double>(r.n_predicted));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids,
                            const PerplexityOptions& opt, const ForwardOptions& fwd,
                            const WindowFn& on_window) {
  const auto& cfg = model.config();
  KvCache cache(cfg, std::max<int64_t>(opt.ctx, 1));
  return run_windows(cfg, ids, opt, on_window,
                     [&](std::span<const int32_t> win, std::vector<float>& logits) {
                       cache.clear();
                       model.forward(win, cache, logits, fwd);
                     });
}

PerplexityResult perplexity(DeviceEngine& engine, const ModelConfig& cfg,
                            std::span<const int32_t> ids, const PerplexityOptions& opt,
                            const WindowFn& on_window) {
  return run_windows(cfg, ids, opt, on_window,
                     [&](std::span<const int32_t> win, std::vector<float>& logits) {
                       engine.reset(static_cast<int64_t>(win.size()));
                       engine.forward(win.data(), static_cast<int64_t>(win.size()), logits, false);
                     });
}

}  // namespace sq
