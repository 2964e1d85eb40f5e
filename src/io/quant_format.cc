#include "io/quant_format.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sq {

using json = nlohmann::ordered_json;

QuantFormat parse_compressed_tensors(const std::string& text, const std::string& where) {
  json q;
  try {
    q = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid quantization_config: {}", where, e.what());
  }
  auto str = [](const json& j, const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
  };
  const std::string method = str(q, "quant_method");
  SQ_CHECK(method == "compressed-tensors",
           "{}: quantization_config.quant_method \"{}\" is not supported (only compressed-tensors "
           "int-quantized W8A8 checkpoints)",
           where, method);
  const std::string format = str(q, "format");
  SQ_CHECK(format == "int-quantized" || format == "naive-quantized",
           "{}: compressed-tensors format \"{}\" is not supported (expected int-quantized)", where,
           format);
  SQ_CHECK(q.contains("config_groups") && q["config_groups"].is_object() &&
               q["config_groups"].size() == 1,
           "{}: expected exactly one entry in quantization_config.config_groups", where);
  const json& g = q["config_groups"].begin().value();
  SQ_CHECK(g.contains("weights") && g["weights"].is_object(),
           "{}: config group without \"weights\"", where);
  const json& w = g["weights"];
  auto check_int8 = [&](const json& s, const char* what) {
    SQ_CHECK(s.value("num_bits", 0) == 8 && str(s, "type") == "int" && s.value("symmetric", false),
             "{}: {} must be symmetric 8-bit int (got num_bits {}, type \"{}\")", where, what,
             s.value("num_bits", 0), str(s, "type"));
  };
  check_int8(w, "weights");
  QuantFormat f;
  const std::string ws = str(w, "strategy");
  if (ws == "channel") {
    f.weight = WeightGranularity::kPerChannel;
  } else if (ws == "tensor") {
    f.weight = WeightGranularity::kPerTensor;
  } else {
    fail("{}: weight strategy \"{}\" is not supported (channel or tensor)", where, ws);
  }
  SQ_CHECK(!w.value("dynamic", false), "{}: dynamic weight quantization is not supported", where);
  SQ_CHECK(g.contains("input_activations") && g["input_activations"].is_object(),
           "{}: weight-only quantization (no input_activations) is not supported; smoothquant runs "
           "W8A8",
           where);
  const json& a = g["input_activations"];
  check_int8(a, "input_activations");
  const std::string as = str(a, "strategy");
  const bool dynamic = a.value("dynamic", false);
  if (as == "token" && dynamic) {
    f.act = ActGranularity::kPerTokenDynamic;
  } else if (as == "tensor" && !dynamic) {
    f.act = ActGranularity::kPerTensorStatic;
  } else if (as == "tensor" && dynamic) {
    f.act = ActGranularity::kPerTensorDynamic;
  } else {
    fail(
        "{}: input activation strategy \"{}\" (dynamic {}) is not supported (token dynamic or "
        "tensor static)",
        where, as, dynamic);
  }
  if (g.contains("targets")) {
    for (const auto& t : g["targets"]) {
      SQ_CHECK(t.is_string() && t.get<std::string>() == "Linear",
               "{}: config group targets other than \"Linear\" are not supported", where);
    }
  }
  f.ignore.clear();
  if (q.contains("ignore") && q["ignore"].is_array()) {
    for (const auto& i : q["ignore"]) {
      SQ_CHECK(i.is_string(), "{}: ignore entries must be strings", where);
      f.ignore.push_back(i.get<std::string>());
    }
  }
  return f;
}

std::string make_compressed_tensors(const QuantFormat& f) {
  SQ_CHECK(f.act != ActGranularity::kPerTensorDynamic,
           "per-tensor dynamic activations (schemes w8a8 and o2) cannot be exported: vLLM serves "
           "only per-token dynamic or per-tensor static int8 activations; use --scheme o1, o3 or "
           "channel-token");
  const bool token = f.act == ActGranularity::kPerTokenDynamic;
  json weights = {{"num_bits", 8},
                  {"type", "int"},
                  {"symmetric", true},
                  {"group_size", nullptr},
                  {"strategy", f.weight == WeightGranularity::kPerChannel ? "channel" : "tensor"},
                  {"block_structure", nullptr},
                  {"dynamic", false},
                  {"actorder", nullptr},
                  {"observer", "minmax"},
                  {"observer_kwargs", json::object()}};
  json acts = {{"num_bits", 8},
               {"type", "int"},
               {"symmetric", true},
               {"group_size", nullptr},
               {"strategy", token ? "token" : "tensor"},
               {"block_structure", nullptr},
               {"dynamic", token},
               {"actorder", nullptr},
               {"observer", token ? json(nullptr) : json("static_minmax")},
               {"observer_kwargs", json::object()}};
  json q = {{"quant_method", "compressed-tensors"},
            {"format", "int-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", acts},
                {"output_activations", nullptr},
                {"format", "int-quantized"}}}}},
            {"ignore", f.ignore},
            {"kv_cache_scheme", nullptr},
            {"sparsity_config", json::object()},
            {"version", "0.12.2"}};
  return q.dump();
}

}  // namespace sq
