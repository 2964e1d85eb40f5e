#include "io/hf_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mmap_file.h"

namespace sq {
namespace {

using json = nlohmann::json;

struct Reader {
  const json& j;
  const std::string& where;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t i64(const char* k) const {
    SQ_CHECK(has(k), "{}: missing \"{}\"", where, k);
    SQ_CHECK(j[k].is_number_integer() && j[k].get<int64_t>() > 0,
             "{}: \"{}\" must be a positive integer", where, k);
    return j[k].get<int64_t>();
  }
  int64_t i64_or(const char* k, int64_t d) const { return has(k) ? i64(k) : d; }
  double f64_or(const char* k, double d) const {
    if (!has(k)) return d;
    SQ_CHECK(j[k].is_number(), "{}: \"{}\" must be a number", where, k);
    return j[k].get<double>();
  }
  bool bool_or(const char* k, bool d) const {
    if (!has(k)) return d;
    SQ_CHECK(j[k].is_boolean(), "{}: \"{}\" must be true or false", where, k);
    return j[k].get<bool>();
  }
  std::string str_or(const char* k, const std::string& d) const {
    if (!has(k)) return d;
    SQ_CHECK(j[k].is_string(), "{}: \"{}\" must be a string", where, k);
    return j[k].get<std::string>();
  }
  std::optional<int32_t> id(const char* k) const {
    if (!has(k) || !j[k].is_number_integer()) return std::nullopt;  // lists (multi-EOS) ignored
    return static_cast<int32_t>(j[k].get<int64_t>());
  }
};

Activation parse_act(const std::string& s, const std::string& where) {
  if (s == "silu" || s == "swish") return Activation::kSilu;
  if (s == "relu") return Activation::kRelu;
  if (s == "gelu" || s == "gelu_new" || s == "gelu_pytorch_tanh") return Activation::kGelu;
  fail("{}: unsupported activation \"{}\" (supported: silu, relu, gelu)", where, s);
}

void check_rope_scaling(const Reader& r) {
  const json* rs = nullptr;
  if (r.has("rope_scaling")) rs = &r.j["rope_scaling"];
  if (r.has("rope_parameters")) rs = &r.j["rope_parameters"];
  if (!rs || !rs->is_object()) return;
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    if (rs->contains(k) && (*rs)[k].is_string()) type = (*rs)[k].get<std::string>();
  }
  SQ_CHECK(type == "default",
           "{}: rope scaling type \"{}\" is not supported yet (only default RoPE)", r.where, type);
}

}  // namespace

std::string_view arch_name(Arch a) {
  switch (a) {
    case Arch::kLlama:
      return "llama";
    case Arch::kMistral:
      return "mistral";
    case Arch::kQwen2:
      return "qwen2";
    case Arch::kOpt:
      return "opt";
  }
  return "?";
}

std::string supported_architectures() { return "llama, mistral, qwen2, opt"; }

ModelConfig parse_model_config(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", where, e.what());
  }
  SQ_CHECK(j.is_object(), "{}: expected a JSON object", where);
  const Reader r{j, where};
  ModelConfig c;
  c.model_type = r.str_or("model_type", "");
  SQ_CHECK(!c.model_type.empty(), "{}: missing \"model_type\" (supported: {})", where,
           supported_architectures());
  if (c.model_type == "llama") {
    c.arch = Arch::kLlama;
  } else if (c.model_type == "mistral") {
    c.arch = Arch::kMistral;
  } else if (c.model_type == "qwen2") {
    c.arch = Arch::kQwen2;
  } else if (c.model_type == "opt") {
    c.arch = Arch::kOpt;
  } else {
    fail("{}: unsupported architecture \"{}\" (supported: {})", where, c.model_type,
         supported_architectures());
  }
  c.vocab_size = r.i64("vocab_size");
  c.hidden_size = r.i64("hidden_size");
  c.n_layers = r.i64("num_hidden_layers");
  c.n_heads = r.i64("num_attention_heads");
  c.bos_id = r.id("bos_token_id");
  c.eos_id = r.id("eos_token_id");
  c.torch_dtype = r.str_or("torch_dtype", r.str_or("dtype", "float32"));
  c.max_positions = r.i64_or("max_position_embeddings", 2048);

  if (c.arch == Arch::kOpt) {
    c.intermediate_size = r.i64("ffn_dim");
    c.n_kv_heads = c.n_heads;
    c.norm = NormKind::kLayerNorm;
    c.norm_eps = 1e-5f;  // OPT's nn.LayerNorm default; config.json does not carry it
    c.act = parse_act(r.str_or("activation_function", "relu"), where);
    c.gated_mlp = false;
    c.positions = PositionKind::kLearned;
    c.position_offset = 2;
    c.tie_embeddings = r.bool_or("tie_word_embeddings", true);
    const bool bias = r.bool_or("enable_bias", true);
    c.qkv_bias = c.o_bias = c.mlp_bias = bias;
    c.pre_norm = r.bool_or("do_layer_norm_before", true);
    c.final_norm = c.pre_norm && !r.bool_or("_remove_final_layer_norm", false);
    SQ_CHECK(r.i64_or("word_embed_proj_dim", c.hidden_size) == c.hidden_size,
             "{}: OPT with word_embed_proj_dim != hidden_size (project_in/out, OPT-350m) is not "
             "supported yet",
             where);
    SQ_CHECK(r.bool_or("layer_norm_elementwise_affine", true),
             "{}: OPT without elementwise-affine LayerNorm is not supported", where);
  } else {
    c.intermediate_size = r.i64("intermediate_size");
    c.n_kv_heads = r.i64_or("num_key_value_heads", c.n_heads);
    c.norm = NormKind::kRmsNorm;
    c.norm_eps = static_cast<float>(r.f64_or("rms_norm_eps", 1e-6));
    c.act = parse_act(r.str_or("hidden_act", "silu"), where);
    c.gated_mlp = true;
    c.positions = PositionKind::kRope;
    c.rope_theta = r.f64_or("rope_theta", 10000.0);
    if (r.has("rope_parameters") && j["rope_parameters"].is_object() &&
        j["rope_parameters"].contains("rope_theta")) {
      c.rope_theta = j["rope_parameters"]["rope_theta"].get<double>();  // transformers >= 5
    }
    check_rope_scaling(r);
    c.tie_embeddings = r.bool_or("tie_word_embeddings", false);
    c.qkv_bias = c.arch == Arch::kQwen2 ? true : r.bool_or("attention_bias", false);
    c.o_bias = c.arch == Arch::kQwen2 ? false : r.bool_or("attention_bias", false);
    c.mlp_bias = r.bool_or("mlp_bias", false);
    if (c.arch == Arch::kMistral || c.arch == Arch::kQwen2) {
      // A sliding window only matters beyond its length; our contexts are checked against it.
      const bool sliding = r.bool_or("use_sliding_window", c.arch == Arch::kMistral);
      if (sliding && r.has("sliding_window")) {
        c.max_positions = std::min(c.max_positions, r.i64("sliding_window"));
      }
    }
  }
  if (r.has("quantization_config")) {
    c.quant = parse_compressed_tensors(j["quantization_config"].dump(), where);
  }
  c.head_dim = r.i64_or("head_dim", c.hidden_size / c.n_heads);
  SQ_CHECK(c.n_heads % c.n_kv_heads == 0,
           "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", where,
           c.n_heads, c.n_kv_heads);
  SQ_CHECK(c.head_dim % 2 == 0 || c.positions != PositionKind::kRope,
           "{}: head_dim {} must be even for rotary embeddings", where, c.head_dim);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  SQ_CHECK(std::filesystem::exists(path),
           "{} not found (MODEL must be a Hugging Face model directory)", path.string());
  return parse_model_config(read_text_file(path), path.string());
}

}  // namespace sq
