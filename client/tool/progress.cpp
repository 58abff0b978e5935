// progress.cpp
#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace fanout::tool {

namespace {

constexpr auto kInterval = std::chrono::milliseconds(100);
constexpr std::size_t kBarWidth = 30;

std::string format_duration(double seconds) {
  const long total = static_cast<long>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  return text;
}

}  // namespace

Progress::Progress(bool progress, bool eta, bool bar, Sink& err)
    : enabled_((progress || eta || bar) && ::isatty(STDERR_FILENO) == 1), eta_(eta || progress), bar_(bar), err_(err) {}

std::string Progress::line(const Counts& counts, bool last) const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  std::string text = "\r\033[Kfanout: ";
  if (bar_ && counts.total && *counts.total > 0) {
    const std::size_t filled = std::min(kBarWidth, counts.done * kBarWidth / *counts.total);
    text += "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "] " +
            std::to_string(counts.done * 100 / *counts.total) + "% ";
  }
  text += std::to_string(counts.done) + "/" + (counts.total ? std::to_string(*counts.total) : "?") + " done, " +
          std::to_string(counts.running) + " running, " + std::to_string(counts.failed) + " failed";
  if (last) return text + ", " + format_duration(elapsed) + "\n";
  if (eta_ && counts.total && counts.done > 0) {
    const double left = elapsed / static_cast<double>(counts.done) *
                        static_cast<double>(*counts.total - std::min(*counts.total, counts.done));
    text += ", ETA " + format_duration(left);
  }
  return text;
}

void Progress::draw(const Counts& counts) {
  if (!enabled_) return;
  next_draw_ = Clock::now() + kInterval;
  err_.write(line(counts, false));
  on_screen_ = true;
}

void Progress::finish(const Counts& counts) {
  if (!enabled_) return;
  err_.write(line(counts, true));
  on_screen_ = false;
}

void Progress::clear() {
  if (!on_screen_) return;
  err_.write("\r\033[K");
  on_screen_ = false;
  next_draw_ = Clock::now();  // redrawn at the next turn of the loop
}

}  // namespace fanout::tool
