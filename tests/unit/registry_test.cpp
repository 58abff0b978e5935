// The task registry: names, calls, and what happens with names that clash or do not exist.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
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

TEST_CASE("a Task's calls point to one kept copy of its name; a call by name holds its own") {
  const auto first = registry_square(1);
  const auto second = registry_square(2);
  CHECK(first.task().data() == second.task().data());  // not a copy each
  CHECK(&first.task() == &registry_square.name());

  SUBCASE("a moved-from call still names its task, and a call moved into itself keeps its own") {
    auto moved = registry_square(3);
    const auto taken = std::move(moved);
    CHECK(taken.task() == "registry.square");
    CHECK(moved.task() == "registry.square");  // NOLINT(bugprone-use-after-move): what this checks
    fanout::Call<int> by_name(std::string("registry.self"), fanout::encode_payload(std::tuple<int>{7}));
    auto& alias = by_name;  // through a reference: the compiler's self-move warning is not the point
    by_name = std::move(alias);
    CHECK(by_name.task() == "registry.self");
    fanout::Call<int> assigned = registry_square(8);
    assigned = moved;  // copied from a moved-from call: the name, not the arguments
    CHECK(assigned.task() == "registry.square");
  }
  SUBCASE("a call outlives its Task, and a Task of the same name later shares the kept name") {
    std::optional<fanout::Call<int>> call;
    const std::string* kept = nullptr;
    {
      const fanout::Task gone{"registry.gone", [](int x) { return x; }};
      call.emplace(gone(4));
      kept = &gone.name();
    }
    CHECK(call->task() == "registry.gone");
    const fanout::Task again{"registry.gone", [](int x) { return x + 1; }};
    CHECK(&again.name() == kept);
  }
  SUBCASE("a call by name owns its name, shared by its copies and the calls moved from it") {
    std::optional<fanout::Call<int>> by_name;
    by_name.emplace(std::string("registry.by_name"), fanout::encode_payload(std::tuple<int>{5}));
    const auto copy = *by_name;
    auto moved = std::move(*by_name);
    by_name.reset();
    CHECK(copy.task() == "registry.by_name");
    CHECK(moved.task() == "registry.by_name");
    CHECK(&copy.task() == &moved.task());
    moved = registry_square(6);  // assigned a Task's call: now points to its kept name
    CHECK(moved.task() == "registry.square");
    CHECK(copy.task() == "registry.by_name");
  }
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

TEST_CASE("a task of scalars registers a second way to run it, on scalars read already") {
  using fanout::detail::Scalar;
  const auto square = fanout::detail::find_registered("registry.square");
  REQUIRE(static_cast<bool>(square.invoke_scalars));
  CHECK(square.scalar_arity == 1);
  const Scalar seven[] = {fanout::detail::scalar_of(7)};
  Scalar result{};
  REQUIRE(square.invoke_scalars(square.task, std::span(seven), result));
  CHECK(result.kind == fanout::ValueKind::int64);
  CHECK(static_cast<std::int64_t>(result.bits) == 49);
  // Not exactly what an int's Codec writes, or not as many: nothing runs, the general way decides.
  const Scalar unsigned_seven[] = {fanout::detail::scalar_of(7U)};
  CHECK_FALSE(square.invoke_scalars(square.task, std::span(unsigned_seven), result));
  const Scalar two[] = {fanout::detail::scalar_of(1), fanout::detail::scalar_of(2)};
  CHECK_FALSE(square.invoke_scalars(square.task, std::span(two), result));
  const auto sum = fanout::detail::find_registered("registry.function");
  REQUIRE(static_cast<bool>(sum.invoke_scalars));
  CHECK(sum.scalar_arity == 2);
  // Text, lists, no result: only the general way.
  CHECK_FALSE(static_cast<bool>(fanout::detail::find_registered("registry.join").invoke_scalars));
  CHECK_FALSE(static_cast<bool>(fanout::detail::find_registered("registry.nothing").invoke_scalars));
}
