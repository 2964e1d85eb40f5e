#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace sq {

bool Progress::enabled() {
  static const bool tty = isatty(fileno(stderr)) != 0;
  return tty;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  active_ = enabled();
}

Progress::~Progress() { done(); }

void Progress::add(int64_t n) {
  count_ += n;
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(200)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::done() {
  if (finished_) return;
  finished_ = true;
  if (active_) draw(true);
}

void Progress::draw(bool final) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? count_ / secs : 0.0;
  std::string line = fmt::format("\r{}: {}", label_, count_);
  if (total_ > 0) line += fmt::format("/{} ({:.0f}%)", total_, 100.0 * count_ / total_);
  line += fmt::format(" {} | {:.1f} {}/s", unit_, rate, unit_);
  if (!final && total_ > 0 && rate > 0)
    line += fmt::format(" | ETA {:.0f}s", (total_ - count_) / rate);
  if (final) line += fmt::format(" | {:.1f}s", secs);
  std::fprintf(stderr, "%s\033[K%s", line.c_str(), final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace sq
