// progress.hpp: --progress, --eta and --bar: one live line on stderr, redrawn every 100 ms, only
// when stderr is a terminal (quiet otherwise, so that logs and pipes get no control characters).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include "job_printer.hpp"

namespace fanout::tool {

class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  struct Counts {
    std::size_t done = 0;
    std::size_t running = 0;
    std::size_t failed = 0;
    std::optional<std::size_t> total;
  };

  // Shown only when one of the three is asked for and stderr is a terminal.
  Progress(bool progress, bool eta, bool bar, Sink& err);

  bool shown() const noexcept { return enabled_; }
  // When the line is due for redrawing (time_point::max() when never).
  Clock::time_point next_draw() const noexcept { return enabled_ ? next_draw_ : Clock::time_point::max(); }
  void draw(const Counts& counts);
  // The last line, ended with a newline.
  void finish(const Counts& counts);
  // Removes the line before other output; it comes back at the next draw.
  void clear();

 private:
  std::string line(const Counts& counts, bool last) const;

  const bool enabled_;
  const bool eta_;
  const bool bar_;
  Sink& err_;
  const Clock::time_point started_ = Clock::now();
  Clock::time_point next_draw_ = Clock::now();
  bool on_screen_ = false;
};

}  // namespace fanout::tool
