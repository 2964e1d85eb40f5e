#include "quant/act_stats.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace sq {

const LinearStats& ActStats::get(const std::string& module, int64_t expected_in,
                                 const std::string& source) const {
  auto it = linears_.find(module);
  SQ_CHECK(it != linears_.end(),
           "{} has no statistics for '{}': the act scales were made for another model; "
           "re-run smoothquant calibrate on this model",
           source, module);
  SQ_CHECK(static_cast<int64_t>(it->second.channel_absmax.size()) == expected_in,
           "{}: '{}' has {} channels but the model's Linear has {} inputs: the act scales were "
           "made for another model",
           source, module, it->second.channel_absmax.size(), expected_in);
  return it->second;
}

void ActStats::validate_for(const Model& model, const std::string& source) const {
  for_each_linear(model.weights(), [&](int, const Linear& lin) { get(lin.name, lin.in, source); });
}

void ActStats::merge(const std::string& module, const float* x, int64_t m, int64_t k,
                     const float* y, int64_t n) {
  std::vector<float> cmax(static_cast<size_t>(k), 0.0f);
  float in_max = 0.0f, out_max = 0.0f;
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * k;
    for (int64_t j = 0; j < k; ++j) cmax[j] = std::max(cmax[j], std::fabs(row[j]));
  }
  for (float v : cmax) in_max = std::max(in_max, v);
  if (y) {
    for (int64_t i = 0; i < m * n; ++i) out_max = std::max(out_max, std::fabs(y[i]));
  }
  LinearStats& s = linears_[module];
  if (s.channel_absmax.empty()) s.channel_absmax.assign(static_cast<size_t>(k), 0.0f);
  for (int64_t j = 0; j < k; ++j) s.channel_absmax[j] = std::max(s.channel_absmax[j], cmax[j]);
  s.input_absmax = std::max(s.input_absmax, in_max);
  s.output_absmax = std::max(s.output_absmax, out_max);
}

void StatsObserver::observe(int, const Linear& lin, const float* x, const float* y, int64_t m) {
  stats_.merge(lin.name, x, m, lin.in, y, lin.out);
}

void ActStats::save(const std::filesystem::path& path) const {
  std::vector<TensorBlob> blobs;
  nlohmann::ordered_json per_tensor = nlohmann::ordered_json::object();
  for (const auto& [name, s] : linears_) {
    blobs.push_back(make_f32_blob(name, {static_cast<int64_t>(s.channel_absmax.size())},
                                  s.channel_absmax.data()));
    per_tensor[name] = {{"input", s.input_absmax}, {"output", s.output_absmax}};
  }
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"sq.kind", "act_scales"},
                                             {"sq.per_tensor_absmax", per_tensor.dump()},
                                             {"sq.model", info.model},
                                             {"sq.calib_text", info.text_file},
                                             {"sq.separator", info.separator},
                                             {"sq.documents", std::to_string(info.documents)},
                                             {"sq.tokens", std::to_string(info.tokens)},
                                             {"sq.seq_len", std::to_string(info.seq_len)}};
  write_safetensors(path, blobs, meta);
}

ActStats ActStats::load(const std::filesystem::path& path) {
  SQ_CHECK(std::filesystem::exists(path), "--act-scales {}: file not found", path.string());
  const auto st = SafetensorsFile::open(path);
  ActStats a;
  for (const auto& [name, t] : st.tensors()) {
    SQ_CHECK(t.shape.size() == 1 && is_float(t.dtype),
             "{}: tensor '{}' is not a 1-D float act scale (shape [{}], {})", path.string(), name,
             fmt::join(t.shape, ", "), dtype_name(t.dtype));
    a.linears_[name].channel_absmax = t.to_f32();
  }
  SQ_CHECK(!a.linears_.empty(), "{}: no act scales inside", path.string());
  const auto& meta = st.metadata();
  auto it = meta.find("sq.per_tensor_absmax");
  a.has_output_stats_ = it != meta.end();
  if (it != meta.end()) {
    try {
      const auto j = nlohmann::json::parse(it->second);
      for (auto e = j.begin(); e != j.end(); ++e) {
        auto l = a.linears_.find(e.key());
        if (l == a.linears_.end()) continue;
        l->second.input_absmax = e.value().at("input").get<float>();
        l->second.output_absmax = e.value().at("output").get<float>();
      }
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid sq.per_tensor_absmax metadata: {}", path.string(), e.what());
    }
  } else {
    for (auto& [n, s] : a.linears_) {
      for (float v : s.channel_absmax) s.input_absmax = std::max(s.input_absmax, v);
    }
  }
  auto get = [&](const char* k) {
    auto m = meta.find(k);
    return m == meta.end() ? std::string() : m->second;
  };
  a.info.model = get("sq.model");
  a.info.text_file = get("sq.calib_text");
  a.info.separator = get("sq.separator");
  auto num = [&](const char* k) {
    const std::string v = get(k);
    return v.empty() ? int64_t{0} : std::stoll(v);
  };
  a.info.documents = num("sq.documents");
  a.info.tokens = num("sq.tokens");
  a.info.seq_len = num("sq.seq_len");
  return a;
}

}  // namespace sq
