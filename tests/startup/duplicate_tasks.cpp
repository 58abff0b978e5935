// A program that (wrongly) defines two tasks with one name. It must not get as far as main().
#include <cstdio>

#include <fanout/fanout.hpp>

const fanout::Task first{"startup.duplicate", [](int x) { return x; }};
const fanout::Task second{"startup.duplicate", [](int x) { return x + 1; }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  std::puts("main() was reached although two tasks share a name");
  return 0;
}
