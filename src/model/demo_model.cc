#include "model/demo_model.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors_writer.h"

namespace sq {
namespace {

using json = nlohmann::ordered_json;

// splitmix64: tiny, well mixed, and identical everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float normal() {  // Box-Muller in double, one value per call
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t s_;
};

// Seed per tensor so that sizes of one tensor never change another's values.
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// GPT-2's byte -> printable code point map, so the tokenizer is a standard ByteLevel BPE.
std::vector<std::string> byte_symbols() {
  std::vector<int> cps(256, -1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cps[b] = printable ? b : 256 + n++;
  }
  std::vector<std::string> out(256);
  for (int b = 0; b < 256; ++b) {
    const int cp = cps[b];
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    out[b] = s;
  }
  return out;
}

json tokenizer_json(int64_t vocab) {
  json v = json::object();
  const auto syms = byte_symbols();
  for (int b = 0; b < 256; ++b) v[syms[b]] = b;
  v["<s>"] = 256;
  v["</s>"] = 257;
  v["<unk>"] = 258;
  for (int64_t i = 259; i < vocab; ++i) v[fmt::format("<extra_{}>", i)] = i;
  json added = json::array();
  int id = 256;
  for (const char* s : {"<s>", "</s>", "<unk>"}) {
    added.push_back({{"id", id++},
                     {"content", s},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  json seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {bos, seq_a}},
        {"pair", {bos, seq_a, bos, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", v},
        {"merges", json::array()}}},
  };
}

}  // namespace

std::vector<int64_t> demo_outlier_channels(const DemoModelOptions& opt) {
  std::vector<int64_t> ch;
  Rng rng(opt.seed ^ 0x6f75746c69657273ull);
  while (static_cast<int64_t>(ch.size()) < std::min(opt.n_outliers, opt.hidden)) {
    const int64_t c = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(opt.hidden));
    if (std::find(ch.begin(), ch.end(), c) == ch.end()) ch.push_back(c);
  }
  return ch;
}

void make_demo_model(const std::filesystem::path& dir, const DemoModelOptions& o) {
  SQ_CHECK(o.hidden > 0 && o.layers > 0 && o.heads > 0 && o.kv_heads > 0 && o.ffn > 0,
           "make-demo-model: sizes must be positive");
  SQ_CHECK(o.hidden % o.heads == 0, "make-demo-model: --hidden {} must be a multiple of --heads {}",
           o.hidden, o.heads);
  SQ_CHECK((o.hidden / o.heads) % 2 == 0,
           "make-demo-model: head_dim (--hidden / --heads) must be even");
  SQ_CHECK(o.heads % o.kv_heads == 0,
           "make-demo-model: --heads {} must be a multiple of --kv-heads {}", o.heads, o.kv_heads);
  SQ_CHECK(o.vocab >= 259,
           "make-demo-model: --vocab must be at least 259 (256 bytes + 3 specials)");
  SQ_CHECK(o.dtype == DType::kF32 || o.dtype == DType::kF16 || o.dtype == DType::kBF16,
           "make-demo-model: --dtype must be f32, f16 or bf16");
  SQ_CHECK(!o.outlier_factors.empty(), "make-demo-model: need at least one outlier factor");
  if (std::filesystem::exists(dir)) {
    SQ_CHECK(std::filesystem::is_directory(dir) && std::filesystem::is_empty(dir),
             "{} already exists and is not an empty directory; choose another -o or remove it",
             dir.string());
  }
  const int64_t hd = o.hidden / o.heads, kvd = o.kv_heads * hd;
  const auto outliers = demo_outlier_channels(o);
  auto factor_of = [&](int64_t c) -> float {
    for (size_t i = 0; i < outliers.size(); ++i) {
      if (outliers[i] == c) return o.outlier_factors[i % o.outlier_factors.size()];
    }
    return 1.0f;
  };

  // Tensor list in a fixed order; each is generated from its own seed while streaming.
  struct Gen {
    TensorSpec spec;
    enum Kind { kNormal, kNorm, kFinalNorm } kind;
    float std;
    bool consumer;  // reads a norm output: its input columns are divided by the outlier factor
  };
  std::vector<Gen> gens;
  auto add = [&](std::string name, std::vector<int64_t> shape, Gen::Kind k, float sd, bool cons) {
    gens.push_back({{std::move(name), o.dtype, std::move(shape)}, k, sd, cons});
  };
  const float sd_h = 1.0f / std::sqrt(static_cast<float>(o.hidden));
  const float sd_f = 1.0f / std::sqrt(static_cast<float>(o.ffn));
  add("model.embed_tokens.weight", {o.vocab, o.hidden}, Gen::kNormal, 1.0f, false);
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    // Residual writers get a smaller scale so the stream stays well conditioned over depth.
    const float sd_res = sd_h / std::sqrt(2.0f * static_cast<float>(o.layers));
    add(p + "input_layernorm.weight", {o.hidden}, Gen::kNorm, 0, false);
    add(p + "self_attn.q_proj.weight", {o.hidden, o.hidden}, Gen::kNormal, sd_h, true);
    add(p + "self_attn.k_proj.weight", {kvd, o.hidden}, Gen::kNormal, sd_h, true);
    add(p + "self_attn.v_proj.weight", {kvd, o.hidden}, Gen::kNormal, sd_h, true);
    add(p + "self_attn.o_proj.weight", {o.hidden, o.hidden}, Gen::kNormal, sd_res, false);
    add(p + "post_attention_layernorm.weight", {o.hidden}, Gen::kNorm, 0, false);
    add(p + "mlp.gate_proj.weight", {o.ffn, o.hidden}, Gen::kNormal, sd_h, true);
    add(p + "mlp.up_proj.weight", {o.ffn, o.hidden}, Gen::kNormal, sd_h, true);
    add(p + "mlp.down_proj.weight", {o.hidden, o.ffn}, Gen::kNormal,
        sd_f / std::sqrt(2.0f * o.layers), false);
  }
  add("model.norm.weight", {o.hidden}, Gen::kFinalNorm, 0, false);  // lm_head is not compensated
  add("lm_head.weight", {o.vocab, o.hidden}, Gen::kNormal, sd_h, false);

  AtomicDir out(dir);
  {
    std::vector<TensorSpec> specs;
    for (const auto& g : gens) specs.push_back(g.spec);
    std::map<std::string, std::string> meta = {
        {"format", "pt"},
        {"sq.generator", "smoothquant make-demo-model"},
        {"sq.seed", std::to_string(o.seed)},
        {"sq.outlier_channels", fmt::format("{}", fmt::join(outliers, ","))}};
    SafetensorsWriter w(out.tmp() / "model.safetensors", specs, meta);
    std::vector<float> buf;
    std::vector<std::byte> bytes;
    for (const auto& g : gens) {
      const auto& s = g.spec;
      buf.resize(s.nbytes() / dtype_size(s.dtype));
      Rng rng(tensor_seed(o.seed, s.name));
      if (g.kind != Gen::kNormal) {
        // Norm gains near 1; outlier channels scaled up (their consumers compensate below).
        for (int64_t j = 0; j < o.hidden; ++j) {
          buf[j] = (1.0f + 0.1f * rng.normal()) * (g.kind == Gen::kNorm ? factor_of(j) : 1.0f);
        }
      } else {
        for (auto& x : buf) x = g.std * rng.normal();
        if (g.consumer) {
          const int64_t in = s.shape[1];
          for (int64_t r = 0; r < s.shape[0]; ++r) {
            for (int64_t c : outliers) buf[r * in + c] /= factor_of(c);
          }
        }
      }
      bytes.resize(s.nbytes());
      from_f32(buf.data(), s.dtype, bytes.data(), buf.size());
      w.write(bytes);
    }
    w.commit();
  }
  const std::string torch_dtype = o.dtype == DType::kF32   ? "float32"
                                  : o.dtype == DType::kF16 ? "float16"
                                                           : "bfloat16";
  json cfg = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", o.hidden},
      {"intermediate_size", o.ffn},
      {"num_hidden_layers", o.layers},
      {"num_attention_heads", o.heads},
      {"num_key_value_heads", o.kv_heads},
      {"head_dim", hd},
      {"vocab_size", o.vocab},
      {"max_position_embeddings", o.max_positions},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"bos_token_id", 256},
      {"eos_token_id", 257},
      {"torch_dtype", torch_dtype},
      {"sq_demo",
       {{"seed", o.seed}, {"outlier_channels", outliers}, {"outlier_factors", o.outlier_factors}}}};
  write_file_atomic(out.tmp() / "config.json", cfg.dump(2) + "\n");
  write_file_atomic(out.tmp() / "tokenizer.json", tokenizer_json(o.vocab).dump() + "\n");
  json tcfg = {{"bos_token", "<s>"},
               {"eos_token", "</s>"},
               {"unk_token", "<unk>"},
               {"add_bos_token", true},
               {"tokenizer_class", "PreTrainedTokenizerFast"}};
  write_file_atomic(out.tmp() / "tokenizer_config.json", tcfg.dump(2) + "\n");
  out.commit();
}

}  // namespace sq
