// An announce (and the heartbeats, handBack and executorLost that announced peers send) as the
// broker reads them after parsing the frame whole: ids, task names (sorted and searched, as
// Peers::on_announce keeps them), slots; the tasks handed back; the executor said lost.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto message = fanout_fuzz::parse(data, size, fanout::wire::InMessage::Check::whole);
  if (!message) return 0;
  std::size_t seen = 0;
  try {
    const auto envelope = message->envelope();
    switch (envelope.which()) {
      case fanout::wire::Envelope::ANNOUNCE: {
        const auto announce = envelope.getAnnounce();
        seen += fanout_fuzz::touch(announce.getWorkerId()) + fanout_fuzz::touch(announce.getExecutorId()) +
                fanout_fuzz::touch(announce.getHost()) + announce.getSlots() + announce.getProcesses();
        std::vector<std::string> names;
        for (const auto name : announce.getTaskNames()) names.emplace_back(name.cStr(), name.size());
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        seen += names.size();
        break;
      }
      case fanout::wire::Envelope::HAND_BACK:
        for (const auto task : envelope.getHandBack().getTasks()) seen += task.getBatchId() + task.getIndex();
        break;
      case fanout::wire::Envelope::EXECUTOR_LOST: {
        const auto lost = envelope.getExecutorLost();
        seen += fanout_fuzz::touch(lost.getExecutorId()) + lost.getBatchId() + lost.getIndex() +
                static_cast<std::size_t>(lost.getSignal());
        break;
      }
      case fanout::wire::Envelope::HEARTBEAT:
        seen += static_cast<std::size_t>(envelope.getHeartbeat().getSentUnixMs());
        break;
      default:
        break;
    }
  } catch (const kj::Exception&) {
  }
  return seen == 0xdeadbeef;
}
