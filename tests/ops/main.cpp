// The operations tests' main: fanout::init first (this program is a client of its clusters), then
// doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <fanout/fanout.hpp>

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
