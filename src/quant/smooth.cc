#include "quant/smooth.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors_writer.h"

namespace sq {

void check_alpha(float alpha, const std::string& flag) {
  SQ_CHECK(std::isfinite(alpha) && alpha >= 0.0f && alpha <= 1.0f,
           "{} {} is outside [0, 1] (typical: 0.5 for OPT, 0.85 for Llama-2/3 and Qwen2, 0.8 for "
           "Mistral)",
           flag, alpha);
}

std::vector<GroupRef> smoothing_groups(ModelWeights& w, const ModelConfig& cfg) {
  const ArchDescriptor& d = descriptor_for(cfg.arch);
  std::vector<GroupRef> out;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& lw = w.layers[l];
    for (size_t gi = 0; gi < d.smooth_groups.size(); ++gi) {
      const SmoothGroup& g = d.smooth_groups[gi];
      GroupRef r;
      r.layer = static_cast<int>(l);
      r.group = static_cast<int>(gi);
      r.norm = g.norm == NormRole::kAttn ? &lw.attn_norm : &lw.mlp_norm;
      for (LinearRole role : g.linears) {
        if (lw.linears[static_cast<int>(role)]) r.linears.push_back(&lw.linear(role));
      }
      out.push_back(std::move(r));
    }
  }
  return out;
}

// torch.pow special-cases the exponent 0.5 as sqrt; mirroring it keeps s bit-identical.
static float pow_like_torch(float x, float e) {
  if (e == 0.5f) return std::sqrt(x);
  if (e == 1.0f) return x;
  if (e == 0.0f) return 1.0f;
  return std::pow(x, e);
}

std::vector<float> smoothing_factors(const std::vector<float>& act,
                                     const std::vector<const Linear*>& linears, float alpha) {
  const size_t k = act.size();
  std::vector<float> wmax(k, 0.0f);
  for (const Linear* lin : linears) {
    SQ_DCHECK(static_cast<size_t>(lin->in) == k);
    const float* w = lin->weight.data();
    for (int64_t o = 0; o < lin->out; ++o) {
      const float* row = w + o * lin->in;
      for (size_t j = 0; j < k; ++j) wmax[j] = std::max(wmax[j], std::fabs(row[j]));
    }
  }
  const float beta = static_cast<float>(1.0 - static_cast<double>(alpha));
  std::vector<float> s(k);
  for (size_t j = 0; j < k; ++j) {
    const float w = std::max(wmax[j], 1e-5f);
    s[j] = std::max(pow_like_torch(act[j], alpha) / pow_like_torch(w, beta), 1e-5f);
  }
  return s;
}

void apply_smoothing(GroupRef& g, const std::vector<float>& s) {
  const size_t k = s.size();
  float* nw = g.norm->weight.mutable_data();
  for (size_t j = 0; j < k; ++j) nw[j] /= s[j];
  if (!g.norm->bias.empty()) {
    float* nb = g.norm->bias.mutable_data();
    for (size_t j = 0; j < k; ++j) nb[j] /= s[j];
  }
  for (Linear* lin : g.linears) {
    float* w = lin->weight.mutable_data();
    for (int64_t o = 0; o < lin->out; ++o) {
      float* row = w + o * lin->in;
      for (size_t j = 0; j < k; ++j) row[j] *= s[j];
    }
  }
}

std::vector<SmoothRecord> smooth_model(ModelWeights& w, const ModelConfig& cfg,
                                       const ActStats& stats,
                                       const std::function<float(int, int)>& alpha_for,
                                       const std::string& stats_source) {
  std::vector<SmoothRecord> out;
  for (GroupRef& g : smoothing_groups(w, cfg)) {
    SQ_CHECK(!g.linears.empty(), "internal error: empty smoothing group");
    const LinearStats& a = stats.get(g.linears.front()->name, g.linears.front()->in, stats_source);
    const float alpha = alpha_for(g.layer, g.group);
    std::vector<const Linear*> lins(g.linears.begin(), g.linears.end());
    auto s = smoothing_factors(a.channel_absmax, lins, alpha);
    apply_smoothing(g, s);
    out.push_back({g.norm->name, alpha, std::move(s)});
  }
  return out;
}

void write_smoothed_checkpoint(const Model& original, const ModelWeights& w,
                               const std::filesystem::path& out_dir,
                               const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  // Tensors that smoothing changed, by checkpoint name.
  std::map<std::string, const FloatBuffer*> changed;
  const ArchDescriptor& d = descriptor_for(original.config().arch);
  for (const LayerWeights& lw : w.layers) {
    for (const SmoothGroup& g : d.smooth_groups) {
      const Norm& n = g.norm == NormRole::kAttn ? lw.attn_norm : lw.mlp_norm;
      changed[n.name + ".weight"] = &n.weight;
      if (!n.bias.empty()) changed[n.name + ".bias"] = &n.bias;
      for (LinearRole r : g.linears) {
        if (lw.linears[static_cast<int>(r)])
          changed[lw.linear(r).name + ".weight"] = &lw.linear(r).weight;
      }
    }
  }
  const Checkpoint& ckpt = original.checkpoint();
  std::vector<TensorSpec> specs;
  for (const auto& [name, t] : ckpt.tensors()) specs.push_back({name, t->dtype, t->shape});
  auto meta = ckpt.metadata();
  for (const auto& [k, v] : metadata) meta[k] = v;
  if (!meta.count("format")) meta["format"] = "pt";

  if (fs::exists(out_dir)) {
    SQ_CHECK(fs::is_directory(out_dir) && fs::is_empty(out_dir),
             "-o {} already exists and is not an empty directory; choose a new output directory",
             out_dir.string());
  }
  AtomicDir dir(out_dir);
  {
    SafetensorsWriter writer(dir.tmp() / "model.safetensors", specs, meta);
    std::vector<std::byte> bytes;
    for (const auto& [name, t] : ckpt.tensors()) {
      auto it = changed.find(name);
      if (it == changed.end()) {
        writer.write(std::span(t->data, t->nbytes));
        continue;
      }
      bytes.resize(t->nbytes);
      from_f32(it->second->data(), t->dtype, bytes.data(), static_cast<size_t>(t->numel()));
      writer.write(bytes);
    }
    writer.commit();
  }
  // Everything but the weights travels unchanged (config, tokenizer, generation config).
  for (const auto& e : fs::directory_iterator(ckpt.dir())) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || n.ends_with(".safetensors") ||
        n == "model.safetensors.index.json" || n.ends_with(".bin") || n.ends_with(".pt")) {
      continue;
    }
    fs::copy_file(e.path(), dir.tmp() / n);
  }
  dir.commit();
}

}  // namespace sq
