// Progress of long work on stderr with rate and ETA. It draws only when stderr is a terminal, so
// pipes, logs and CI stay quiet; done() prints nothing either in that case.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sq {

class Progress {
 public:
  // `unit` names what is counted ("tokens", "windows"); total may be 0 when unknown.
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  void add(int64_t n);
  void done();
  static bool enabled();  // true when stderr is a terminal

 private:
  void draw(bool final);
  std::string label_, unit_;
  int64_t total_ = 0, count_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool active_ = false, finished_ = false;
};

}  // namespace sq
