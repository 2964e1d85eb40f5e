#include "io/hf_config.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace sq {
namespace {

TEST(HfConfig, TinyStoriesLlama) {
  SQ_REQUIRE_SHARED();
  const auto c = load_model_config(test::shared_dir() / "models/tinystories-656k");
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.max_positions, 512);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(HfConfig, OptSynth) {
  SQ_REQUIRE_SHARED();
  const auto c = load_model_config(test::shared_dir() / "models/opt-synth");
  EXPECT_EQ(c.arch, Arch::kOpt);
  EXPECT_EQ(c.norm, NormKind::kLayerNorm);
  EXPECT_EQ(c.positions, PositionKind::kLearned);
  EXPECT_EQ(c.position_offset, 2);
  EXPECT_EQ(c.act, Activation::kRelu);
  EXPECT_FALSE(c.gated_mlp);
  EXPECT_TRUE(c.pre_norm);
  EXPECT_TRUE(c.final_norm);
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.intermediate_size, 768);
}

TEST(HfConfig, Qwen2ReadsTransformers5RopeParameters) {
  SQ_REQUIRE_SHARED();
  const auto c = load_model_config(test::shared_dir() / "models/qwen2-synth");
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
}

TEST(HfConfig, MistralAndRopeTheta) {
  const auto c = parse_model_config(
      R"({"model_type":"mistral","vocab_size":32000,"hidden_size":4096,"intermediate_size":14336,
          "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,
          "rope_theta":1000000.0,"rms_norm_eps":1e-5,"max_position_embeddings":32768,
          "sliding_window":null})",
      "config.json");
  EXPECT_EQ(c.arch, Arch::kMistral);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.max_positions, 32768);
}

TEST(HfConfig, UnsupportedArchitectureListsSupportedOnes) {
  try {
    parse_model_config(R"({"model_type":"gpt_neox","vocab_size":10})", "m/config.json");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("m/config.json"), std::string::npos);
    EXPECT_NE(msg.find("gpt_neox"), std::string::npos);
    EXPECT_NE(msg.find("llama, mistral, qwen2, opt"), std::string::npos);
  }
}

TEST(HfConfig, BadInputIsAnError) {
  EXPECT_THROW(parse_model_config("{not json", "c.json"), Error);
  EXPECT_THROW(parse_model_config(R"({"model_type":"llama"})", "c.json"), Error);
  EXPECT_THROW(parse_model_config(
                   R"({"model_type":"llama","vocab_size":10,"hidden_size":64,"intermediate_size":8,
                       "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3})",
                   "c.json"),
               Error);  // heads not a multiple of kv heads
  EXPECT_THROW(parse_model_config(
                   R"({"model_type":"llama","vocab_size":10,"hidden_size":64,"intermediate_size":8,
                       "num_hidden_layers":1,"num_attention_heads":4,
                       "rope_scaling":{"rope_type":"yarn","factor":4}})",
                   "c.json"),
               Error);
  EXPECT_THROW(load_model_config("/nonexistent/dir"), Error);
}

}  // namespace
}  // namespace sq
