// Uses only the installed headers and libraries: no Cap'n Proto or build-tree header is reachable.
#include <cstdio>
#include <string>

#include <fanout/fanout.hpp>

const fanout::Task shout{"consumer.shout", [](std::string word) { return word + "!"; }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  auto [a, b] = fanout::Concurrency::driver("fork").run(shout("hello"), shout("fanout"));
  auto [c] = fanout::Concurrency::driver("sync").run([] { return 42; });
  if (a != "hello!" || b != "fanout!" || c != 42) {
    std::printf("package consumer: wrong results %s %s %d\n", a.c_str(), b.c_str(), c);
    return 1;
  }
  std::printf("package consumer: ok (%s %s %d)\n", a.c_str(), b.c_str(), c);
  return 0;
}
