// The GPU engine (--device cuda) against the CPU engine on the shared TinyStories and Qwen2 models:
// bf16 Linears within bf16 tolerance of the fp32 logits, and INT8 channel-token Linears (the same
// int8 weights as the CPU executor) close to the CPU INT8 logits. Skips without a GPU or without
// the shared models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backend/registry.h"
#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "quant/device_model.h"
#include "quant/fake_quant.h"
#include "test_util.h"

namespace sq {
namespace {

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max<double>(d, std::fabs(a[i] - b[i]));
  return d;
}

class CudaEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEngine, LogitsMatchTheCpuEngine) {
  if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device visible";
  const auto dir = test::shared_dir() / "models" / GetParam();
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared model not found at " << dir;
  const Model fp = Model::load(dir);
  const int64_t n = 64, vocab = fp.config().vocab_size;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 3) % vocab);

  KvCache cache(fp.config(), n);
  std::vector<float> cpu, gpu;
  fp.forward(ids, cache, cpu);
  auto bf16 = make_device_engine(fp, false);
  bf16->reset(n);
  bf16->forward(ids.data(), n, gpu, false);
  ASSERT_EQ(gpu.size(), cpu.size());
  // bf16 weights and Linear inputs: ~3 significant digits per product, accumulated in fp32.
  EXPECT_LT(max_abs_diff(cpu, gpu), 0.1) << "bf16 engine";

  // Token-by-token decoding over the device KV cache reproduces the prefill's last row. The two
  // use different attention kernels (prefill tiles, decode splits the keys over warps), so fp32
  // summation orders differ and a bf16 rounding of a Linear input can flip: 0.03 seen on the
  // H200; a wrong position or cache slot moves logits by whole units.
  std::vector<float> step;
  bf16->reset(n);
  bf16->forward(ids.data(), n - 4, step, true);
  for (int64_t t = n - 4; t < n; ++t) bf16->forward(ids.data() + t, 1, step, true);
  const std::vector<float> last(gpu.end() - vocab, gpu.end());
  EXPECT_LT(max_abs_diff(last, step), 0.1) << "decode vs prefill";
  // Steps 2.. replay a captured CUDA graph; an engine without graphs must give the same bits.
  {
    setenv("SQ_CUDA_GRAPHS", "0", 1);
    auto eager = make_device_engine(fp, false);
    unsetenv("SQ_CUDA_GRAPHS");
    std::vector<float> e;
    eager->reset(n);
    eager->forward(ids.data(), n - 4, e, true);
    for (int64_t t = n - 4; t < n; ++t) eager->forward(ids.data() + t, 1, e, true);
    EXPECT_EQ(e, step) << "graph replay vs eager decode";
  }

  QuantSetup setup;
  setup.quant = {Scheme::kChannelToken, false, QuantMode::kInt8};
  setup.keep_fp_weights = true;
  const QuantModel q = build_quant_model(fp, setup, nullptr, nullptr, "");
  KvCache qcache(fp.config(), n);
  std::vector<float> cpu8, gpu8;
  q.model->forward(ids, qcache, cpu8, q.forward_options());
  auto int8 = make_device_engine(*q.model, true);
  int8->reset(n);
  int8->forward(ids.data(), n, gpu8, false);
  // Same int8 weights and quantizer; the GPU's reduction orders flip an activation rounding now
  // and then, so the criterion is the issue's: the loss agrees within 0.1% (plus a loose bound on
  // single logits).
  const double nll_cpu = window_nll(cpu8.data(), ids, vocab);
  const double nll_gpu = window_nll(gpu8.data(), ids, vocab);
  EXPECT_LT(std::fabs(nll_gpu / nll_cpu - 1), 1e-3) << "INT8 engine NLL";
  EXPECT_LT(max_abs_diff(cpu8, gpu8), 0.2) << "INT8 engine logits";
  // INT8 decode (the M ≤ 16 kernels, replayed as a graph) against the INT8 prefill's last row.
  std::vector<float> step8;
  int8->reset(n);
  int8->forward(ids.data(), n - 4, step8, true);
  for (int64_t t = n - 4; t < n; ++t) int8->forward(ids.data() + t, 1, step8, true);
  const std::vector<float> last8(gpu8.end() - vocab, gpu8.end());
  EXPECT_LT(max_abs_diff(last8, step8), 0.2) << "INT8 decode vs prefill";
  EXPECT_LT(std::fabs(window_nll(gpu.data(), ids, vocab) / window_nll(cpu.data(), ids, vocab) - 1),
            2e-3)
      << "bf16 engine NLL";
}

INSTANTIATE_TEST_SUITE_P(Shared, CudaEngine, ::testing::Values("tinystories-656k", "qwen2-synth"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

}  // namespace
}  // namespace sq
