// The GPU engine (--device cuda) against the CPU engine on the shared TinyStories, Qwen2 and OPT
// models: fp32 Linears within fp32 summation noise of the CPU logits, bf16 Linears within bf16
// tolerance, and real INT8 (every scheme of NUMERICS §2, with and without --quant-bmm, the same
// int8 weights and static scales as the CPU executor) close to the CPU INT8 logits; decode steps (a
// replayed CUDA graph) against prefill; calibration statistics on the GPU against the CPU's. Skips
// without a GPU or without the shared models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "backend/registry.h"
#include "eval/compare.h"
#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "quant/calibrate.h"
#include "quant/device_model.h"
#include "quant/fake_quant.h"
#include "test_util.h"

namespace sq {
namespace {

// Infinite when the sizes differ or either side is not finite (a NaN must fail every bound).
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    d = std::max<double>(d, std::fabs(a[i] - b[i]));
  }
  return d;
}

class CudaEngine : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
    dir_ = test::shared_dir() / "models" / GetParam();
    if (!std::filesystem::exists(dir_)) GTEST_SKIP() << "shared model not found at " << dir_;
    fp_.emplace(Model::load(dir_));
    vocab_ = fp_->config().vocab_size;
    ids_.resize(kTokens);
    for (int64_t i = 0; i < kTokens; ++i) ids_[i] = static_cast<int32_t>((i * 7919 + 3) % vocab_);
    KvCache cache(fp_->config(), kTokens);
    fp_->forward(ids_, cache, cpu_);
  }
  // Prefill of n - 4 tokens, then 4 single-token steps: the last step's logits.
  std::vector<float> decode(DeviceEngine& e) {
    std::vector<float> step;
    e.reset(kTokens);
    e.forward(ids_.data(), kTokens - 4, step, true);
    for (int64_t t = kTokens - 4; t < kTokens; ++t) e.forward(ids_.data() + t, 1, step, true);
    return step;
  }
  std::vector<float> prefill(DeviceEngine& e) {
    std::vector<float> out;
    e.reset(kTokens);
    e.forward(ids_.data(), kTokens, out, false);
    return out;
  }
  std::vector<float> last_row(const std::vector<float>& all) const {
    return std::vector<float>(all.end() - vocab_, all.end());
  }

  static constexpr int64_t kTokens = 64;
  std::filesystem::path dir_;
  std::optional<Model> fp_;
  int64_t vocab_ = 0;
  std::vector<int32_t> ids_;
  std::vector<float> cpu_;
};

TEST_P(CudaEngine, FloatEnginesMatchTheCpuEngine) {
  auto f32 = make_device_engine(*fp_, DevicePrecision::kF32);
  const auto gpu32 = prefill(*f32);
  ASSERT_EQ(gpu32.size(), cpu_.size());
  // fp32 everywhere; only summation orders differ (no TF32 in the GEMMs).
  EXPECT_LT(max_abs_diff(cpu_, gpu32), 2e-3) << "fp32 engine";

  auto bf16 = make_device_engine(*fp_, DevicePrecision::kBf16);
  const auto gpu = prefill(*bf16);
  // bf16 weights and Linear inputs: ~3 significant digits per product, accumulated in fp32.
  EXPECT_LT(max_abs_diff(cpu_, gpu), 0.1) << "bf16 engine";
  EXPECT_LT(
      std::fabs(window_nll(gpu.data(), ids_, vocab_) / window_nll(cpu_.data(), ids_, vocab_) - 1),
      2e-3)
      << "bf16 engine NLL";

  // Token-by-token decoding over the device KV cache reproduces the prefill's last row. The two
  // use different attention kernels, so fp32 summation orders differ and a bf16 rounding of a
  // Linear input can flip: 0.03 seen on the H200; a wrong position or cache slot moves logits by
  // whole units. The fp32 engine has no such rounding: there the two agree tightly.
  const auto step = decode(*bf16);
  EXPECT_LT(max_abs_diff(last_row(gpu), step), 0.1) << "bf16 decode vs prefill";
  EXPECT_LT(max_abs_diff(last_row(gpu32), decode(*f32)), 2e-3) << "fp32 decode vs prefill";
  // Steps 2.. replay a captured CUDA graph; an engine without graphs must give the same bits.
  setenv("SQ_CUDA_GRAPHS", "0", 1);
  auto eager = make_device_engine(*fp_, DevicePrecision::kBf16);
  unsetenv("SQ_CUDA_GRAPHS");
  EXPECT_EQ(decode(*eager), step) << "graph replay vs eager decode";
}

// How far the CPU INT8 engine moves from its own logits `base` when every norm weight of the
// quantized model changes by one ulp (six sign patterns): the size of the disagreement that fp32
// rounding alone — a norm's reduction order, say — can cause. These tiny models calibrated on
// pseudo-random tokens are bistable in places: a one-ulp change flips an int8 rounding, and with
// per-tensor scales or static ones that flip reaches every element of a tensor. Measured on the
// CPU (2026-11-29): up to KL 7.2e-3 and 1.62 on one logit for opt-synth o1, KL 4.7e-4 for
// TinyStories channel-token, while most cases do not move at all.
struct UlpEnvelope {
  double kl = 0, dlogit = 0, top1 = 1;
};

uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  return x ^ (x >> 16);
}

UlpEnvelope cpu_ulp_envelope(const Model& fp, const QuantSetup& setup, const CalibSet& calib,
                             const std::vector<int32_t>& ids, int64_t vocab,
                             const std::vector<float>& base) {
  UlpEnvelope env;
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int pattern = 0; pattern < 6; ++pattern) {
    const QuantModel q = build_quant_model(fp, setup, nullptr, &calib, "test");
    ModelWeights& w = q.model->mutable_weights();
    uint32_t index = 0;
    auto nudge = [&](FloatBuffer& buf) {
      if (buf.empty()) return;
      float* p = buf.mutable_data();
      for (size_t i = 0; i < buf.size(); ++i, ++index) {
        const bool up = pattern == 0   ? true
                        : pattern == 1 ? false
                        : pattern == 2 ? (index & 1) != 0
                        : pattern == 3 ? (index & 1) == 0
                                       : (mix32(index * 7 + pattern) & 1) != 0;
        p[i] = std::nextafter(p[i], up ? INFINITY : -INFINITY);
      }
    };
    for (LayerWeights& l : w.layers) {
      nudge(l.attn_norm.weight);
      nudge(l.mlp_norm.weight);
    }
    nudge(w.final_norm.weight);
    KvCache cache(fp.config(), n);
    std::vector<float> got;
    q.model->forward(ids, cache, got, q.forward_options());
    DistComparison d;
    d.add(base.data(), got.data(), n, vocab);
    env.kl = std::max(env.kl, d.kl_mean());
    env.top1 = std::min(env.top1, d.top1());
    env.dlogit = std::max(env.dlogit, max_abs_diff(base, got));
  }
  return env;
}

// Real INT8 on the GPU against the CPU INT8 executor for one scheme. Same int8 weights, scales
// and quantizer, and the lm_head in fp32 as on the CPU; the GPU's reduction orders flip an
// activation rounding now and then, so the criteria are the (the loss agrees within 0.1%)
// and NUMERICS §6's for quantized configs: KL and top-1 held to the tightest bounds that
// shared/golden/README §4.1 recommends for any quantized config (KL mean ≤ 1e-4, top-1 ≥ 0.95),
// single logits to 0.2. Where the CPU engine itself moves further under one-ulp norm-weight
// changes (cpu_ulp_envelope), the KL, top-1 and logit bounds become twice that movement: a GPU
// that lands in a state the CPU reaches through one ulp is not wrong, and a GPU bug that moves
// logits more than fp32 rounding can still fails. The NLL bound never widens. Single prefill
// logits are not compared with per-tensor dynamic activation scales (o2, w8a8), where one ulp
// anywhere in a tensor can move every element's rounding and §4.1 calls them "not meaningful".
void check_int8(const Model& fp, Scheme scheme, bool bmm, const std::vector<int32_t>& ids,
                int64_t vocab) {
  SCOPED_TRACE(std::string(scheme_name(scheme)) + (bmm ? " --quant-bmm" : ""));
  QuantSetup setup;
  setup.quant = {scheme, bmm, QuantMode::kInt8};
  setup.keep_fp_weights = true;
  const CalibSet calib{{ids}, "", static_cast<int64_t>(ids.size())};
  const QuantModel q = build_quant_model(fp, setup, nullptr, &calib, "test");
  const int64_t n = static_cast<int64_t>(ids.size());
  KvCache cache(fp.config(), n);
  std::vector<float> cpu8, gpu8, step;
  q.model->forward(ids, cache, cpu8, q.forward_options());
  const auto& exec = dynamic_cast<const Int8Executor&>(*q.executor);
  auto e = make_device_engine(*q.model, exec, /*f32_lm_head=*/true);
  e->reset(n);
  e->forward(ids.data(), n, gpu8, false);
  ASSERT_EQ(gpu8.size(), cpu8.size());
  const double nll_cpu = window_nll(cpu8.data(), ids, vocab);
  EXPECT_LT(std::fabs(window_nll(gpu8.data(), ids, vocab) / nll_cpu - 1), 1e-3) << "NLL";
  std::printf("  %s%s: max |logit| GPU vs CPU INT8 %.4f\n",
              std::string(scheme_name(scheme)).c_str(), bmm ? " --quant-bmm" : "",
              max_abs_diff(cpu8, gpu8));
  DistComparison dist;
  dist.add(cpu8.data(), gpu8.data(), n, vocab);
  std::printf("    KL(cpu ‖ gpu) mean %.2e, top-1 agreement %.4f\n", dist.kl_mean(), dist.top1());
  const UlpEnvelope env = cpu_ulp_envelope(fp, setup, calib, ids, vocab, cpu8);
  std::printf("    CPU under one-ulp norm changes: KL %.2e, top-1 %.4f, max |logit| %.4f\n", env.kl,
              env.top1, env.dlogit);
  const double kl_bound = std::max(1e-4, 2 * env.kl);
  const double top1_bound = std::min(0.95, 1 - 2 * (1 - env.top1));
  const double logit_bound = std::max(0.2, 2 * env.dlogit);
  EXPECT_LT(dist.kl_mean(), kl_bound) << "KL";
  EXPECT_GE(dist.top1(), top1_bound) << "top-1";
  if (scheme != Scheme::kO2 && scheme != Scheme::kW8A8) {
    EXPECT_LT(max_abs_diff(cpu8, gpu8), logit_bound) << "logits";
  }
  // Decode (the M ≤ 16 kernels, replayed as a graph) against the CPU's decode steps: with
  // per-tensor dynamic scales a step's quantization depends on the batch, so decode is compared
  // with decode, not with the prefill's last row.
  KvCache dcache(fp.config(), n);
  ForwardOptions last = q.forward_options();
  last.last_logits_only = true;
  std::vector<float> cpu_step;
  q.model->forward(std::span<const int32_t>(ids.data(), n - 4), dcache, cpu_step, last);
  e->reset(n);
  e->forward(ids.data(), n - 4, step, true);
  for (int64_t t = n - 4; t < n; ++t) {
    q.model->forward(std::span<const int32_t>(ids.data() + t, 1), dcache, cpu_step, last);
    e->forward(ids.data() + t, 1, step, true);
  }
  EXPECT_LT(max_abs_diff(cpu_step, step), logit_bound) << "decode";
  // Steps 2.. replay a graph (GEMVs launched with programmatic dependent launch); an engine
  // launching eagerly must give the same bits: the INT8 kernels are deterministic.
  setenv("SQ_CUDA_GRAPHS", "0", 1);
  auto eager = make_device_engine(*q.model, exec, /*f32_lm_head=*/true);
  unsetenv("SQ_CUDA_GRAPHS");
  std::vector<float> eager_step;
  eager->reset(n);
  eager->forward(ids.data(), n - 4, eager_step, true);
  for (int64_t t = n - 4; t < n; ++t) eager->forward(ids.data() + t, 1, eager_step, true);
  EXPECT_EQ(eager_step, step) << "graph replay vs eager decode";
}

TEST_P(CudaEngine, Int8MatchesTheCpuInt8Engine) {
  for (const Scheme s :
       {Scheme::kChannelToken, Scheme::kO1, Scheme::kO2, Scheme::kO3, Scheme::kW8A8})
    check_int8(*fp_, s, false, ids_, vocab_);
  for (const Scheme s : {Scheme::kChannelToken, Scheme::kO2, Scheme::kO3})
    check_int8(*fp_, s, true, ids_, vocab_);
}

TEST_P(CudaEngine, CalibrationMatchesTheCpu) {
  const CalibSet set{
      {ids_, std::vector<int32_t>(ids_.begin(), ids_.begin() + 17)}, "", kTokens + 17};
  const ActStats cpu = calibrate(*fp_, set);
  const ActStats gpu = calibrate_on_device(*fp_, set);
  ASSERT_EQ(cpu.linears().size(), gpu.linears().size());
  for (const auto& [name, c] : cpu.linears()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(gpu.linears().count(name));
    const LinearStats& g = gpu.linears().at(name);
    ASSERT_EQ(c.channel_absmax.size(), g.channel_absmax.size());
    // fp32 on both sides: abs-max is exact, the values feeding it differ by summation order.
    for (size_t j = 0; j < c.channel_absmax.size(); ++j)
      ASSERT_NEAR(g.channel_absmax[j], c.channel_absmax[j], 1e-4 + 1e-4 * c.channel_absmax[j]);
    EXPECT_NEAR(g.input_absmax, c.input_absmax, 1e-4 + 1e-4 * c.input_absmax);
    EXPECT_NEAR(g.output_absmax, c.output_absmax, 1e-4 + 1e-4 * c.output_absmax);
  }
  EXPECT_EQ(gpu.info.documents, 2);
  EXPECT_EQ(gpu.info.tokens, kTokens + 17);
}

// The three shared models: Llama (RMSNorm, RoPE, SwiGLU), Qwen2 (the same with q/k/v biases) and
// OPT (LayerNorm with biases, learned positions, ReLU MLP, biases everywhere).
INSTANTIATE_TEST_SUITE_P(Shared, CudaEngine,
                         ::testing::Values("tinystories-656k", "qwen2-synth", "opt-synth"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

}  // namespace
}  // namespace sq
