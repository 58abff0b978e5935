// The task registry: names, calls, and what happens with names that clash or do not exist.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include <fanout/fanout.hpp>

namespace {

const fanout::Task registry_square{"registry.square", [](int x) { return x * x; }};
const fanout::Task registry_join{"registry.join",
                                 [](const std::string& a, std::vector<std::string> b) { return a + std::to_string(b.size()); }};
const fanout::Task registry_nothing{"registry.nothing", [] {}};

int plain_function(long a, long b) { return static_cast<int>(a + b); }
const fanout::Task registry_function{"registry.function", &plain_function};

template <class T, class... A>
concept CallableWith = requires(const T& task, A... args) { task(args...); };

}  // namespace

TEST_CASE("a task call carries the task name and yields a typed Call") {
  const auto call = registry_square(3);
  static_assert(std::is_same_v<decltype(call), const fanout::Call<int>>);
  CHECK(call.task() == "registry.square");
  CHECK(fanout::decode_payload<std::tuple<int>>(call.args()) == std::tuple<int>{3});

  static_assert(std::is_same_v<decltype(registry_nothing()), fanout::Call<void>>);
  static_assert(std::is_same_v<fanout::Call<void>::result_type, std::monostate>);
  static_assert(std::is_same_v<decltype(registry_function(1L, 2L)), fanout::Call<int>>);
}

TEST_CASE("task arguments are checked at compile time and converted to the parameter types") {
  static_assert(CallableWith<decltype(registry_square), int>);
  static_assert(CallableWith<decltype(registry_square), short>);  // converts like a call would
  static_assert(!CallableWith<decltype(registry_join), int, int>);
  static_assert(!CallableWith<decltype(registry_square)>);
  static_assert(!CallableWith<decltype(registry_square), int, int>);
  static_assert(!CallableWith<decltype(registry_square), std::string>);
  // What travels is the parameter's type: arguments are converted before they are encoded.
  const auto call = registry_join("x", std::vector<std::string>{"a", "b"});
  CHECK(fanout::decode_payload<std::tuple<std::string, std::vector<std::string>>>(call.args()) ==
        std::tuple<std::string, std::vector<std::string>>{"x", {"a", "b"}});
}

TEST_CASE("registered tasks are listed by name") {
  const auto names = fanout::detail::registered_task_names();
  CHECK(std::find(names.begin(), names.end(), "registry.square") != names.end());
  CHECK(std::find(names.begin(), names.end(), "registry.function") != names.end());
}

TEST_CASE("two live tasks with one name fail loudly") {
  try {
    const fanout::Task clash{"registry.square", [](int x) { return x; }};
    FAIL("a second task named registry.square was accepted");
  } catch (const fanout::Error& error) {
    CHECK(std::string(error.what()).find("two tasks are named 'registry.square'") != std::string::npos);
  }
  // The original is untouched by the failed registration.
  CHECK(fanout::Concurrency::driver("sync").run(registry_square(5)) == std::tuple<int>{25});
}

TEST_CASE("a task's name is free again once the task is gone") {
  {
    const fanout::Task scoped{"registry.scoped", [] { return 1; }};
  }
  const fanout::Task again{"registry.scoped", [] { return 2; }};
  CHECK(std::get<0>(fanout::Concurrency::driver("sync").run(again())) == 2);
}

TEST_CASE("a task needs a name") {
  CHECK_THROWS_AS(fanout::Task("", [] { return 0; }), fanout::Error);
}
