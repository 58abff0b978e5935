// A program that uses the process driver but forgot fanout::init. Prints what happened.
#include <cstdio>

#include <fanout/fanout.hpp>

const fanout::Task forgot_square{"forgot.square", [](int x) { return x * x; }};

int main() {
  try {
    auto [value] = fanout::Concurrency::driver("process").run(forgot_square(3));
    std::printf("ran without init: %d\n", value);
    return 1;
  } catch (const fanout::Error& error) {
    std::printf("refused: %s\n", error.what());
    return 0;
  }
}
