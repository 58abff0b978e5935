// The worker's reconnection backoff, in-process.
#include <doctest/doctest.h>

#include <chrono>

#include "backoff.hpp"

using fanout::worker::Backoff;
using std::chrono::milliseconds;

TEST_CASE("reconnect backoff doubles up to its limit, each delay within the jitter") {
  Backoff backoff(milliseconds(100), milliseconds(5000), 0.5, 42);
  long expected = 100;
  for (int attempt = 0; attempt < 12; ++attempt) {
    const auto delay = backoff.next().count();
    CHECK(delay >= expected / 2);
    CHECK(delay <= expected * 3 / 2);
    expected = std::min(expected * 2, 5000L);
  }
  backoff.reset();
  const auto after_reset = backoff.next().count();
  CHECK(after_reset >= 50);
  CHECK(after_reset <= 150);
}

TEST_CASE("reconnect backoff spreads workers apart: different seeds give different delays") {
  Backoff one(milliseconds(1000), milliseconds(5000), 0.5, 1);
  Backoff two(milliseconds(1000), milliseconds(5000), 0.5, 2);
  bool differed = false;
  for (int attempt = 0; attempt < 5; ++attempt) differed = differed || one.next() != two.next();
  CHECK(differed);
}
