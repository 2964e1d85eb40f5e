// Logging facade over spdlog. Logs and progress go to stderr; results never do (they go to stdout).
// Verbosity: warn by default for the CLI, info with -v, debug with -vv.
#pragma once

#include <spdlog/spdlog.h>

namespace sq::log {

void set_verbosity(int level);  // 0 = warn, 1 = info, 2 = debug

template <typename... Args>
void info(spdlog::format_string_t<Args...> f, Args&&... args) {
  spdlog::info(f, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> f, Args&&... args) {
  spdlog::warn(f, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(spdlog::format_string_t<Args...> f, Args&&... args) {
  spdlog::debug(f, std::forward<Args>(args)...);
}

}  // namespace sq::log
