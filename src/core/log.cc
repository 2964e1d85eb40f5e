#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sq::log {

void set_verbosity(int level) {
  static bool installed = false;
  if (!installed) {
    auto logger = spdlog::stderr_color_mt("sq");
    logger->set_pattern("[%l] %v");
    spdlog::set_default_logger(logger);
    installed = true;
  }
  spdlog::set_level(level >= 2   ? spdlog::level::debug
                    : level == 1 ? spdlog::level::info
                                 : spdlog::level::warn);
}

}  // namespace sq::log
