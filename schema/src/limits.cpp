// limits.cpp
#include "limits.hpp"

#include <cctype>
#include <cstdlib>

#include <fanout/error.hpp>

namespace fanout::wire {

namespace {

template <class List>
std::optional<std::string> check(const char* what, List list) {
  const capnp::AnyList::Reader any(list);
  if (!amplified(any)) return std::nullopt;
  return std::string(what) + " claims " + std::to_string(any.size()) +
         " elements in 0 bytes: a list of zero-sized elements, which fanout never sends";
}

std::optional<std::string> check_tasks(capnp::List<Task>::Reader tasks) {
  if (auto why = check("the window's task list", tasks)) return why;
  for (const auto task : tasks) {
    // Arguments are Values, checked where they are decoded (value.cpp); shell commands are read
    // whole by the executor.
    if (!task.hasShell()) continue;
    const auto shell = task.getShell();
    if (auto why = check("a shell command's argv", shell.getArgv())) return why;
    if (auto why = check("a shell command's env", shell.getEnv())) return why;
  }
  return std::nullopt;
}

}  // namespace

bool amplified(capnp::AnyList::Reader list) {
  if (list.size() == 0) return false;
  switch (list.getElementSize()) {
    case capnp::ElementSize::VOID:
      return true;
    case capnp::ElementSize::INLINE_COMPOSITE: {
      // Every element of a struct list has the same size: the first one's is the list's.
      const auto first = list.as<capnp::List<capnp::AnyStruct>>()[0];
      return first.getDataSection().size() == 0 && first.getPointerSection().size() == 0;
    }
    default:
      return false;  // at least a bit per element, which the frame limit bounds
  }
}

std::optional<std::size_t> parse_frame_bytes(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  std::size_t value = std::stoull(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  if (unit == "K" || unit == "k") {
    value <<= 10;
  } else if (unit == "M" || unit == "m") {
    value <<= 20;
  } else if (unit == "G" || unit == "g") {
    value <<= 30;
  } else if (!unit.empty()) {
    return std::nullopt;
  }
  // ZeroMQ takes the limit as an int64; beyond 4 GiB a frame's list counts (32 bits) overflow.
  if (value < kMinMaxFrameBytes || value > (std::size_t{4} << 30)) return std::nullopt;
  return value;
}

std::size_t max_frame_bytes_from_env() {
  const char* text = std::getenv("FANOUT_MAX_FRAME_BYTES");
  if (text == nullptr || *text == '\0') return kDefaultMaxFrameBytes;
  const auto value = parse_frame_bytes(text);
  if (!value) {
    throw Error(std::string("FANOUT_MAX_FRAME_BYTES=") + text + " is not a frame size: give bytes (or K, M, G) from " +
                std::to_string(kMinMaxFrameBytes) + " to 4G");
  }
  return *value;
}

std::size_t max_frame_bytes() {
  static const std::optional<std::size_t> value = []() -> std::optional<std::size_t> {
    try {
      return max_frame_bytes_from_env();
    } catch (const Error&) {
      return std::nullopt;
    }
  }();
  return value ? *value : max_frame_bytes_from_env();  // the second call throws the clear error
}

std::optional<std::string> check_counts(Envelope::Reader envelope) {
  switch (envelope.which()) {
    case Envelope::TASKS:
      return check_tasks(envelope.getTasks().getTasks());
    case Envelope::RESULTS:
      return check("the results list", envelope.getResults());
    case Envelope::ANNOUNCE:
      return check("the announced task names", envelope.getAnnounce().getTaskNames());
    case Envelope::HAND_BACK:
      return check("the handed-back tasks", envelope.getHandBack().getTasks());
    case Envelope::STATUS: {
      const auto workers = envelope.getStatus().getWorkers();
      if (auto why = check("the status's workers", workers)) return why;
      for (const auto worker : workers) {
        if (auto why = check("a worker's task names", worker.getTaskNames())) return why;
      }
      return std::nullopt;
    }
    case Envelope::DEFERRED_REPORT:
      return check("the deferred report's dead tasks", envelope.getDeferredReport().getDead());
    default:
      return std::nullopt;  // no list to iterate
  }
}

}  // namespace fanout::wire
