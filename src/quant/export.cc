#include "quant/export.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/hf_config.h"
#include "io/quant_format.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/arch.h"
#include "quant/quantizer.h"
#include "quant/smooth.h"

namespace sq {
namespace {

using json = nlohmann::ordered_json;

// Row r of a [rows, k] float tensor upcast to fp32.
void read_row(const TensorView& t, int64_t r, int64_t k, float* out) {
  to_f32(t.dtype, t.data + static_cast<size_t>(r * k) * dtype_size(t.dtype), out,
         static_cast<size_t>(k));
}

void release(const TensorView& t) { t.file->release(t.data, t.nbytes); }

struct LinearPlan {
  const TensorView* weight = nullptr;
  std::vector<float>* s = nullptr;  // smoothing factors of its group, or null
  float in_absmax = 0;              // for o3: per-tensor input abs-max of the smoothed Linear
};

std::vector<std::byte> to_dtype(const std::vector<float>& v, DType dt) {
  std::vector<std::byte> b(v.size() * dtype_size(dt));
  from_f32(v.data(), dt, b.data(), v.size());
  return b;
}

}  // namespace

ExportSummary export_int8_checkpoint(const std::filesystem::path& model_dir,
                                     const ExportOptions& opt,
                                     const std::filesystem::path& out_dir) {
  namespace fs = std::filesystem;
  const ModelConfig cfg = load_model_config(model_dir);
  SQ_CHECK(!cfg.quant, "{} is already an INT8 checkpoint; quantize its floating-point original",
           model_dir.string());
  const SchemeSpec spec = scheme_spec(opt.scheme);
  QuantFormat fmt_desc{spec.weight, spec.act, {"lm_head"}};
  const std::string qcfg = make_compressed_tensors(fmt_desc);  // rejects w8a8/o2 up front
  const bool smooth = opt.alpha.has_value() || !opt.per_group_alpha.empty();
  SQ_CHECK(!smooth || opt.stats, "smoothing needs act scales (--act-scales or --calib-text)");
  SQ_CHECK(spec.act != ActGranularity::kPerTensorStatic || opt.stats,
           "scheme o3 needs activation statistics: pass --calib-text or --act-scales");
  if (fs::exists(out_dir)) {
    SQ_CHECK(fs::is_directory(out_dir) && fs::is_empty(out_dir),
             "-o {} already exists and is not an empty directory; choose a new output directory",
             out_dir.string());
  }
  const Checkpoint ckpt = Checkpoint::open_dir(model_dir);
  const ArchDescriptor& d = descriptor_for(cfg.arch);
  const std::string source = "act scales";

  // Smoothing factors per group and the plan of every decoder Linear.
  std::vector<std::vector<float>> factors;
  factors.reserve(static_cast<size_t>(cfg.n_layers) * d.smooth_groups.size());
  std::map<std::string, LinearPlan> plans;                 // by weight tensor name
  std::map<std::string, std::vector<float>*> norm_factor;  // norm tensor name -> s
  for (int l = 0; l < cfg.n_layers; ++l) {
    for (const LinearSpec& ls : d.linears) {
      const std::string name = fmt::format("{}{}.{}", d.layer_prefix, l, ls.name);
      const TensorView* t = ckpt.find(name + ".weight");
      if (!t && ls.role == LinearRole::kGate && !cfg.gated_mlp) continue;
      SQ_CHECK(t != nullptr, "missing tensor '{}.weight' in checkpoint {}", name,
               model_dir.string());
      SQ_CHECK(is_float(t->dtype) && t->shape.size() == 2,
               "tensor '{}.weight' in {} must be a 2-D float weight", name, model_dir.string());
      LinearPlan p;
      p.weight = t;
      if (opt.stats) p.in_absmax = opt.stats->get(name, t->shape[1], source).input_absmax;
      plans[name + ".weight"] = p;
    }
    for (size_t gi = 0; gi < d.smooth_groups.size() && smooth; ++gi) {
      const SmoothGroup& g = d.smooth_groups[gi];
      const float alpha =
          opt.per_group_alpha.empty()
              ? *opt.alpha
              : opt.per_group_alpha.at(static_cast<size_t>(l) * d.smooth_groups.size() + gi);
      std::vector<std::string> names;
      for (LinearRole r : g.linears) names.push_back(linear_module_name(d, l, r));
      const TensorView& first = *plans.at(names.front() + ".weight").weight;
      const int64_t k = first.shape[1];
      const auto& act = opt.stats->get(names.front(), k, source).channel_absmax;
      // Column abs-max over the group's weights, streamed row by row.
      std::vector<float> wmax(static_cast<size_t>(k), 0.0f), row(static_cast<size_t>(k));
      for (const auto& n : names) {
        const TensorView& t = *plans.at(n + ".weight").weight;
        for (int64_t r = 0; r < t.shape[0]; ++r) {
          read_row(t, r, k, row.data());
          for (int64_t j = 0; j < k; ++j) wmax[j] = std::max(wmax[j], std::fabs(row[j]));
        }
        release(t);
      }
      const float beta = static_cast<float>(1.0 - static_cast<double>(alpha));
      std::vector<float> s(static_cast<size_t>(k));
      for (int64_t j = 0; j < k; ++j) {
        const float w = std::max(wmax[j], 1e-5f);
        const float a = alpha == 0.5f ? std::sqrt(act[j]) : std::pow(act[j], alpha);
        const float b = beta == 0.5f ? std::sqrt(w) : std::pow(w, beta);
        s[j] = std::max(a / b, 1e-5f);
      }
      factors.push_back(std::move(s));
      std::vector<float>* sp = &factors.back();
      float in_absmax = 0;
      for (int64_t j = 0; j < k; ++j) in_absmax = std::max(in_absmax, act[j] / (*sp)[j]);
      for (const auto& n : names) {
        plans.at(n + ".weight").s = sp;
        plans.at(n + ".weight").in_absmax = in_absmax;
      }
      const std::string norm = fmt::format("{}{}.{}", d.layer_prefix, l,
                                           g.norm == NormRole::kAttn ? d.attn_norm : d.mlp_norm);
      norm_factor[norm + ".weight"] = sp;
      if (ckpt.find(norm + ".bias")) norm_factor[norm + ".bias"] = sp;
    }
  }

  // Output tensor list: every checkpoint tensor, Linears as I8 plus their scales.
  std::vector<TensorSpec> specs;
  ExportSummary sum;
  for (const auto& [name, t] : ckpt.tensors()) {
    sum.fp_bytes += static_cast<int64_t>(t->nbytes);
    auto p = plans.find(name);
    if (p == plans.end()) {
      specs.push_back({name, t->dtype, t->shape});
      continue;
    }
    const std::string base = name.substr(0, name.size() - std::string(".weight").size());
    specs.push_back({name, DType::kI8, t->shape});
    const int64_t ns = spec.weight == WeightGranularity::kPerChannel ? t->shape[0] : 1;
    specs.push_back({base + ".weight_scale", t->dtype,
                     spec.weight == WeightGranularity::kPerChannel ? std::vector<int64_t>{ns, 1}
                                                                   : std::vector<int64_t>{1}});
    if (spec.act == ActGranularity::kPerTensorStatic)
      specs.push_back({base + ".input_scale", t->dtype, {1}});
  }
  auto meta = ckpt.metadata();
  for (const auto& [k, v] : opt.provenance) meta[k] = v;
  meta["format"] = "pt";

  AtomicDir dir(out_dir);
  {
    SafetensorsWriter w(dir.tmp() / "model.safetensors", specs, meta);
    Progress progress("quantize", static_cast<int64_t>(ckpt.tensors().size()), "tensors");
    std::vector<float> row;
    std::vector<int8_t> qrow;
    for (const auto& [name, t] : ckpt.tensors()) {
      progress.add(1);
      auto p = plans.find(name);
      if (p == plans.end()) {
        auto nf = norm_factor.find(name);
        if (nf == norm_factor.end()) {
          w.write(std::span(t->data, t->nbytes));
        } else {
          auto v = t->to_f32();
          for (size_t j = 0; j < v.size(); ++j) v[j] /= (*nf->second)[j];
          w.write(to_dtype(v, t->dtype));
        }
        release(*t);
        continue;
      }
      const LinearPlan& plan = p->second;
      const int64_t n = t->shape[0], k = t->shape[1];
      row.resize(static_cast<size_t>(k));
      qrow.resize(static_cast<size_t>(k));
      auto smoothed_row = [&](int64_t r) {
        read_row(*t, r, k, row.data());
        if (plan.s) {
          for (int64_t j = 0; j < k; ++j) row[j] *= (*plan.s)[j];
        }
      };
      std::vector<float> scales;
      float tensor_scale = 0;
      if (spec.weight == WeightGranularity::kPerTensor) {
        float mx = 0;
        for (int64_t r = 0; r < n; ++r) {
          smoothed_row(r);
          mx = std::max(mx, quant::absmax(row.data(), k));
        }
        tensor_scale = quant::scale_from_absmax(mx);
        scales.assign(1, tensor_scale);
      }
      for (int64_t r = 0; r < n; ++r) {
        smoothed_row(r);
        const float sc = spec.weight == WeightGranularity::kPerChannel
                             ? quant::scale_from_absmax(quant::absmax(row.data(), k))
                             : tensor_scale;
        if (spec.weight == WeightGranularity::kPerChannel) scales.push_back(sc);
        for (int64_t j = 0; j < k; ++j) qrow[j] = quant::quantize_value(row[j], sc);
        w.write(std::as_bytes(std::span(qrow)));
      }
      w.write(to_dtype(scales, t->dtype));
      if (spec.act == ActGranularity::kPerTensorStatic) {
        w.write(to_dtype({quant::scale_from_absmax(plan.in_absmax)}, t->dtype));
      }
      release(*t);
      ++sum.linears;
    }
    w.commit();
    progress.done();
  }
  // config.json with the quantization_config block; other files unchanged.
  json config = json::parse(read_text_file(model_dir / "config.json"));
  config["quantization_config"] = json::parse(qcfg);
  write_file_atomic(dir.tmp() / "config.json", config.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(model_dir)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || n == "config.json" || n.ends_with(".safetensors") ||
        n == "model.safetensors.index.json" || n.ends_with(".bin") || n.ends_with(".pt")) {
      continue;
    }
    fs::copy_file(e.path(), dir.tmp() / n);
  }
  sum.out_bytes = static_cast<int64_t>(fs::file_size(dir.tmp() / "model.safetensors"));
  dir.commit();
  return sum;
}

}  // namespace sq
