// Test programs of the process driver call fanout::init first, like any program using it: in
// local mode the driver re-executes this very binary as its worker.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <fanout/fanout.hpp>

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
