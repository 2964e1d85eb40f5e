#include "quant/scheme.h"

namespace sq {

SchemeSpec scheme_spec(Scheme s) {
  switch (s) {
    case Scheme::kW8A8:
      return {WeightGranularity::kPerTensor, ActGranularity::kPerTensorDynamic};
    case Scheme::kO1:
      return {WeightGranularity::kPerTensor, ActGranularity::kPerTokenDynamic};
    case Scheme::kO2:
      return {WeightGranularity::kPerTensor, ActGranularity::kPerTensorDynamic};
    case Scheme::kO3:
      return {WeightGranularity::kPerTensor, ActGranularity::kPerTensorStatic};
    case Scheme::kChannelToken:
      return {WeightGranularity::kPerChannel, ActGranularity::kPerTokenDynamic};
  }
  return {WeightGranularity::kPerChannel, ActGranularity::kPerTokenDynamic};
}

std::string_view scheme_name(Scheme s) {
  switch (s) {
    case Scheme::kW8A8:
      return "w8a8";
    case Scheme::kO1:
      return "o1";
    case Scheme::kO2:
      return "o2";
    case Scheme::kO3:
      return "o3";
    case Scheme::kChannelToken:
      return "channel-token";
  }
  return "?";
}

std::optional<Scheme> parse_scheme(std::string_view name) {
  for (Scheme s : {Scheme::kW8A8, Scheme::kO1, Scheme::kO2, Scheme::kO3, Scheme::kChannelToken}) {
    if (scheme_name(s) == name) return s;
  }
  return std::nullopt;
}

std::string scheme_list() { return "w8a8, o1, o2, o3, channel-token"; }

std::string_view weight_granularity_name(WeightGranularity g) {
  return g == WeightGranularity::kPerTensor ? "per-tensor" : "per-channel";
}

std::string_view act_granularity_name(ActGranularity g) {
  switch (g) {
    case ActGranularity::kPerTokenDynamic:
      return "per-token dynamic";
    case ActGranularity::kPerTensorDynamic:
      return "per-tensor dynamic";
    case ActGranularity::kPerTensorStatic:
      return "per-tensor static";
  }
  return "?";
}

}  // namespace sq
