// fuzz_seeds: writes the seed corpus of every fuzz target from fanout's own encoders, so that the
// fuzzers start from real messages of every kind (and the seeds follow the schema as it evolves).
// Usage: fuzz_seeds DIR   (writes DIR/<target>/<name>; the committed corpus/ was made by it)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <capnp/any.h>

#include <fanout/codec.hpp>

#include "deferred_store.hpp"
#include "journal.hpp"
#include "journal_io.hpp"
#include "transport.hpp"

namespace wire = fanout::wire;
namespace fs = std::filesystem;
namespace broker = fanout::broker;

namespace {

fs::path g_root;

void write(const std::string& target, const std::string& name, const void* data, std::size_t size) {
  fs::create_directories(g_root / target);
  std::ofstream out(g_root / target / name, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Writes a frame seed. A seed from fanout's own encoders must pass the checks a broker makes
// (a check that refuses real messages would leave the fuzzers nothing to explore, and fanout
// nothing that works); a regression seed must be refused by them.
void write(const std::string& target, const std::string& name, wire::OutMessage& message, bool accepted = true) {
  auto frame = message.frame();
  write(target, name, frame.data(), frame.size());
  std::string why;
  zmq::message_t copy(frame.data(), frame.size());
  const bool parsed = wire::InMessage::parse(std::move(copy), &why, wire::kDefaultMaxFrameBytes, wire::InMessage::Check::whole)
                          .has_value();
  if (parsed != accepted) {
    std::fprintf(stderr, "fuzz_seeds: %s/%s was %s: %s\n", target.c_str(), name.c_str(),
                 parsed ? "accepted" : "refused", why.c_str());
    std::exit(1);
  }
}

void window_seeds() {
  {
    wire::OutMessage out;
    auto window = out.envelope().initTasks();
    window.setBatchId(7);
    window.setTotal(3);
    auto tasks = window.initTasks(3);
    for (unsigned i = 0; i < 3; ++i) {
      tasks[i].setBatchId(7);
      tasks[i].setIndex(i);
      tasks[i].setName(i == 2 ? "cube" : "square");
      fanout::Codec<std::tuple<int>>::encode(wire::wrap(tasks[i].initArgs()), std::tuple<int>(static_cast<int>(i)));
    }
    tasks[1].setKey("users");
    tasks[1].setHasKey(true);
    write("window", "three_tasks", out);
  }
  {
    wire::OutMessage out;
    auto window = out.envelope().initTasks();
    window.setBatchId(9);
    window.setTotal(1);
    auto task = window.initTasks(1)[0];
    task.setBatchId(9);
    task.setName(std::string(wire::kShellTaskName));
    auto shell = task.initShell();
    auto argv = shell.initArgv(2);
    argv.set(0, "echo");
    argv.set(1, "hi");
    auto env = shell.initEnv(1);
    env[0].setName("LANG");
    env[0].setValue("C");
    shell.setInput(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("in"), 2));
    write("window", "shell_command", out);
  }
  {
    // A unit of four slots whose two scalars each are laid out together (Task.scalarArgs).
    wire::OutMessage out;
    auto window = out.envelope().initTasks();
    window.setBatchId(8);
    window.setTotal(1);
    auto task = window.initTasks(1)[0];
    task.setBatchId(8);
    task.setName("pair");
    task.setSlots(4);
    auto bits = task.initScalarArgs(8);
    auto kinds = task.initScalarKinds(8);
    for (unsigned i = 0; i < 8; ++i) {
      bits.set(i, i * 3);
      kinds.set(i, static_cast<std::uint8_t>(i % 2 == 0 ? fanout::ValueKind::int64 : fanout::ValueKind::float64));
    }
    write("window", "scalar_unit", out);
  }
  {
    // Regression (issue 11): 2^29 empty tasks in 72 bytes; the broker exited on std::bad_alloc.
    wire::OutMessage out(16);
    auto window = out.envelope().initTasks();
    window.setTotal((1u << 29) - 1);
    // `tasks` is the window's one pointer: a list of zero-sized structs is written there directly.
    capnp::AnyStruct::Builder(wire::TaskBatch::Builder(window)).getPointerSection()[0].initAsListOfAnyStruct(0, 0, (1u << 29) - 1);
    write("window", "regression_2p29_empty_tasks", out, false);
  }
}

void results_seeds() {
  wire::OutMessage out;
  auto results = out.envelope().initResults(3);
  for (unsigned i = 0; i < 3; ++i) {
    results[i].setBatchId(7);
    results[i].setIndex(i);
    results[i].setRanOn("worker w/1 pid 7");
  }
  fanout::Codec<std::vector<std::string>>::encode(wire::wrap(results[0].initValue()), {"a", "bc"});
  fanout::Codec<std::map<std::string, double>>::encode(wire::wrap(results[1].initValue()), {{"x", 1.5}});
  auto error = results[2].initError();
  error.setKind(wire::ErrorKind::EXCEPTION);
  error.setRemoteType("std::runtime_error");
  error.setMessage("boom");
  write("results", "three_results", out);

  // A unit's values laid out together (Result.scalarValues), its second slot failed.
  wire::OutMessage unit;
  auto result = unit.envelope().initResults(1)[0];
  result.setBatchId(8);
  auto bits = result.initScalarValues(3);
  auto kinds = result.initScalarKinds(3);
  for (unsigned i = 0; i < 3; ++i) {
    bits.set(i, i == 1 ? 0 : i * 9);
    kinds.set(i, static_cast<std::uint8_t>(i == 1 ? fanout::ValueKind::none : fanout::ValueKind::int64));
  }
  auto failed = result.initSlotErrors(1)[0];
  failed.setSlot(1);
  failed.initError().setKind(wire::ErrorKind::EXCEPTION);
  write("results", "scalar_unit_values", unit);
}

void announce_seeds() {
  {
    wire::OutMessage out;
    auto announce = out.envelope().initAnnounce();
    announce.setRole(wire::Announce::Role::EXECUTOR);
    announce.setWorkerId("host/1");
    announce.setExecutorId("host/1/0/0");
    auto names = announce.initTaskNames(2);
    names.set(0, "square");
    names.set(1, "fanout.shell");
    announce.setSlots(2048);
    write("announce", "executor", out);
  }
  {
    wire::OutMessage out;
    auto refs = out.envelope().initHandBack().initTasks(2);
    refs[0].setBatchId(7);
    refs[1].setIndex(1);
    write("announce", "hand_back", out);
  }
  {
    wire::OutMessage out;
    auto lost = out.envelope().initExecutorLost();
    lost.setExecutorId("host/1/0/0");
    lost.setSignal(9);
    write("announce", "executor_lost", out);
  }
}

void output_seeds() {
  wire::OutMessage out;
  auto chunk = out.envelope().initOutput();
  chunk.setBatchId(9);
  chunk.setStream(wire::OutputChunk::Stream::ERR);
  chunk.setData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("line\n"), 5));
  write("output", "stderr_line", out);
}

void deferred_seeds() {
  {
    wire::OutMessage out;
    auto request = out.envelope().initDeferredRequest();
    request.setAction(wire::DeferredRequest::Action::RETRY);
    request.setReceipt("42");
    request.setIndex(3);
    request.setHasIndex(true);
    write("deferred", "retry", out);
  }
  {
    wire::OutMessage out;
    auto report = out.envelope().initDeferredReport();
    auto dead = report.initDead(1)[0];
    dead.setReceipt("42");
    dead.setName("square");
    dead.setMessage("boom");
    write("deferred", "report", out);
  }
}

void journal_seeds() {
  wire::OutMessage window;
  auto tasks = window.envelope().initTasks();
  tasks.setDeferred(true);
  tasks.setTotal(2);
  auto list = tasks.initTasks(2);
  list[0].setName("square");
  list[1].setName("square");
  list[1].setIndex(1);
  auto frame = window.frame();
  const std::string payload(static_cast<const char*>(frame.data()), frame.size());
  std::string file(broker::journal_io::magic_v2, broker::journal_io::magic_bytes);
  file.append(8, '\0');  // salt 0 and a header CRC the scan does not look at
  const std::vector<broker::JournalRecord> records{broker::BatchAccepted{1, 2, payload}, broker::TaskFinished{1, 0},
                                                  broker::TaskDead{1, 1, 9, "boom"}};
  int n = 0;
  for (const auto& record : records) {
    std::string body;
    broker::encode_body_prefix(record, body);
    if (const auto* accepted = std::get_if<broker::BatchAccepted>(&record)) body += accepted->payload;
    write("journal", "record_" + std::to_string(n++), body.data(), body.size());
    char header[broker::frame_header_bytes];
    broker::journal_io::put_u32(header, static_cast<std::uint32_t>(body.size()));
    const std::uint32_t crc = broker::crc32c(broker::crc32c(0, header, 4), body.data(), body.size());
    broker::journal_io::put_u32(header + 4, crc);
    file.append(header, sizeof header);
    file += body;
  }
  write("journal", "file_three_records", file.data(), file.size());
  // Regression (found writing journal_fuzz): a record claiming 2^32 - 1 tasks sized a table of 160 GB.
  std::string huge;
  broker::encode_body_prefix(broker::BatchAccepted{1, 0xffffffffu, ""}, huge);
  write("journal", "regression_huge_task_count", huge.data(), huge.size());
}

void value_seeds() {
  const auto flat = [](auto value, const std::string& name) {
    capnp::MallocMessageBuilder message;
    fanout::Codec<decltype(value)>::encode(wire::wrap(message.initRoot<wire::Value>()), value);
    const auto words = wire::to_flat(message);
    write("value", name, words.begin(), words.size() * sizeof(capnp::word));
  };
  flat(std::vector<std::int64_t>{1, 2, 3}, "ints");
  flat(std::map<std::string, std::vector<double>>{{"a", {1.0}}, {"b", {}}}, "map");
  flat(std::tuple<int, std::string, std::optional<bool>>{1, "x", true}, "tuple");
  flat(std::vector<std::optional<std::int32_t>>{std::nullopt, 4}, "optionals");
  {
    // Regression (issue 11): a list of 2^28 empty Values, which vector decoding reserved whole.
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Value>();
    root.initList(0);  // the union's pointer, rewritten below as a list of zero-sized structs
    capnp::AnyStruct::Builder(wire::Value::Builder(root)).getPointerSection()[0].initAsListOfAnyStruct(0, 0, 1u << 28);
    const auto words = wire::to_flat(message);
    write("value", "regression_2p28_empty_values", words.begin(), words.size() * sizeof(capnp::word));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  g_root = argv[1];
  window_seeds();
  results_seeds();
  announce_seeds();
  output_seeds();
  deferred_seeds();
  journal_seeds();
  value_seeds();
  return 0;
}
