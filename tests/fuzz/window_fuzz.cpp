// A client window as the broker takes it: parsed whole (every pointer checked, counts against the
// bytes that carry them), then read the way Batches::on_window and Frame (records.hpp) read it:
// every task's index, batch and name, and its arguments, key and shell command as an executor
// later reads them.
#include "fuzz_frame.hpp"
#include "records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto message = fanout_fuzz::parse(data, size, fanout::wire::InMessage::Check::whole);
  if (!message || !message->envelope().isTasks()) return 0;
  std::size_t seen = 0;
  try {
    const auto window = message->envelope().getTasks();
    seen += window.getTotal() + window.getBatchId() + window.getSettledBefore();
    for (const auto task : window.getTasks()) {
      seen += task.getIndex() + task.getBatchId() + fanout_fuzz::touch(task.getKey()) +
              fanout_fuzz::touch(task.getAvoidWorker());
      fanout_fuzz::read_value(task.getArgs());
      for (const auto bits : task.getScalarArgs()) seen += bits;  // a unit's scalars laid out together
      for (const auto kind : task.getScalarKinds()) seen += kind;
      if (task.hasShell()) {
        const auto shell = task.getShell();
        for (const auto arg : shell.getArgv()) seen += fanout_fuzz::touch(arg);
        for (const auto var : shell.getEnv()) seen += fanout_fuzz::touch(var.getName()) + fanout_fuzz::touch(var.getValue());
      }
    }
    const fanout::broker::Frame frame(std::move(*message));
    seen += frame.names.size() + frame.runs.size();
    for (std::uint32_t i = 0; i < frame.size(); ++i) seen += frame.name_at(i);
  } catch (const kj::Exception&) {
    // A field of the wrong kind: the broker refuses the window with nothing changed.
  }
  return seen == 0xdeadbeef;  // keeps the reads
}
