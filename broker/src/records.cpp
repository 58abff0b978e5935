#include "records.hpp"

namespace fanout::broker {

Frame::Frame(wire::InMessage received)
    : message(std::move(received)), tasks(message.envelope().getTasks().getTasks()) {
  for (std::uint32_t position = 0; position < tasks.size(); ++position) {
    // Every text field the broker reads later, outside the handling of this message (avoidWorker
    // in dispatch; the key in `fanout deferred list`), is read once here: one of another kind
    // (a struct where text belongs) throws now, and the message is refused as unreadable, instead
    // of throwing later in the loop and stopping the broker.
    const auto task = tasks[position];
    if (task.hasAvoidWorker()) (void)task.getAvoidWorker();
    if (task.hasKey()) (void)task.getKey();
    const std::string_view name = text(task.getName());
    if (!runs.empty() && names[runs.back().name] == name) {
      ++runs.back().end;
      continue;
    }
    auto known = std::find(names.begin(), names.end(), name);
    if (known == names.end()) known = names.emplace(names.end(), name);
    runs.push_back(Run{position, position + 1, static_cast<std::uint32_t>(known - names.begin())});
  }
}

}  // namespace fanout::broker
