#include "eval/alpha_select.h"

#include <fmt/format.h>

#include "core/log.h"
#include "eval/compare.h"
#include "quant/calibrate.h"

namespace sq {

AlphaSelection select_alpha(const Model& fp, const ActStats& stats, const CalibSet& calib,
                            const QuantConfig& quant, const std::vector<AlphaChoice>& per_group,
                            const std::string& stats_source, int64_t max_tokens) {
  // The scoring documents: the first calibration documents up to max_tokens.
  std::vector<const std::vector<int32_t>*> docs;
  int64_t tokens = 0, longest = 1;
  for (const auto& d : calib.docs) {
    if (tokens >= max_tokens) break;
    docs.push_back(&d);
    tokens += static_cast<int64_t>(d.size());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(d.size()));
  }
  std::vector<std::vector<float>> fp_logits(docs.size());
  {
    KvCache cache(fp.config(), longest);
    for (size_t i = 0; i < docs.size(); ++i) {
      cache.clear();
      fp.forward(*docs[i], cache, fp_logits[i]);
    }
  }
  const size_t n_groups = per_group.size();
  auto score = [&](const std::vector<float>& alphas) {
    QuantSetup setup;
    setup.quant = quant;
    setup.quant.mode = QuantMode::kFake;
    setup.per_group_alpha = alphas;
    const QuantModel q = build_quant_model(fp, setup, &stats, &calib, stats_source);
    DistComparison cmp;
    KvCache cache(fp.config(), longest);
    std::vector<float> logits;
    for (size_t i = 0; i < docs.size(); ++i) {
      cache.clear();
      q.model->forward(*docs[i], cache, logits, q.forward_options());
      cmp.add(fp_logits[i].data(), logits.data(), static_cast<int64_t>(docs[i]->size()),
              fp.config().vocab_size);
    }
    return cmp.kl_mean();
  };
  AlphaSelection sel;
  std::vector<float> pg;
  for (const auto& c : per_group) pg.push_back(c.alpha);
  sel.per_group = pg;
  sel.winner = "per-group";
  sel.kl = score(pg);
  sel.candidates.push_back({"per-group", sel.kl});
  for (int i = 0; i <= 20; ++i) {
    const float a = static_cast<float>(i) / 20.0f;
    const double kl = score(std::vector<float>(n_groups, a));
    const std::string name = fmt::format("global {:.2f}", a);
    sel.candidates.push_back({name, kl});
    if (kl < sel.kl) {
      sel.kl = kl;
      sel.winner = name;
      sel.per_group.assign(n_groups, a);
    }
  }
  log::info("alpha auto: {} wins (calibration KL {:.3e})", sel.winner, sel.kl);
  return sel;
}

}  // namespace sq
