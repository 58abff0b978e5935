#include "records.hpp"

namespace fanout::broker {

Frame::Frame(wire::InMessage received)
    : message(std::move(received)), tasks(message.envelope().getTasks().getTasks()) {
  for (std::uint32_t position = 0; position < tasks.size(); ++position) {
    const std::string_view name = text(tasks[position].getName());
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
