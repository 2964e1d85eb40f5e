// Quantization schemes (NUMERICS.md §2) and the options that modify them. A scheme fixes the
// weight granularity and the activation granularity; smoothing (α or off) and --quant-bmm are
// independent of it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "io/quant_format.h"

namespace sq {

enum class Scheme { kW8A8, kO1, kO2, kO3, kChannelToken };

struct SchemeSpec {
  WeightGranularity weight;
  ActGranularity act;
};

SchemeSpec scheme_spec(Scheme s);
std::string_view scheme_name(Scheme s);  // "w8a8", "o1", ..., "channel-token"
std::optional<Scheme> parse_scheme(std::string_view name);
std::string scheme_list();  // "w8a8, o1, o2, o3, channel-token"
std::string_view weight_granularity_name(WeightGranularity g);
std::string_view act_granularity_name(ActGranularity g);

// Fake: simulate in fp32 (weights q·scale, activations rounded); int8: real int8 GEMMs.
enum class QuantMode { kFake, kInt8 };

struct QuantConfig {
  Scheme scheme = Scheme::kChannelToken;
  bool quant_bmm = false;
  QuantMode mode = QuantMode::kFake;
};

}  // namespace sq
