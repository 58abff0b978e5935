#include "admission.hpp"

#include <algorithm>

namespace fanout::broker {

namespace {

std::string busy(const std::string& what, std::size_t held, std::size_t adding, std::size_t cap, const char* flag) {
  return "the broker is busy: " + what + " " + std::to_string(held) + " and this window adds " + std::to_string(adding) +
         ", over the cap of " + std::to_string(cap) + " (" + flag + "); retry once results have been read";
}

}  // namespace

std::variant<std::unique_ptr<Admission::Hold>, std::string> Admission::admit(const PeerId& client, std::size_t tasks,
                                                                             std::size_t bytes) {
  const Usage mine = of(client);
  if (mine.tasks + tasks > config_.max_client_tasks) {
    return busy("this client holds tasks:", mine.tasks, tasks, config_.max_client_tasks, "--max-client-tasks");
  }
  if (mine.bytes + bytes > config_.max_client_bytes) {
    return busy("this client's windows hold bytes:", mine.bytes, bytes, config_.max_client_bytes, "--max-client-bytes");
  }
  if (total_.tasks + tasks > config_.max_total_tasks) {
    return busy("all clients hold tasks:", total_.tasks, tasks, config_.max_total_tasks, "--max-total-tasks");
  }
  if (total_.bytes + bytes > config_.max_total_bytes) {
    return busy("all clients' windows hold bytes:", total_.bytes, bytes, config_.max_total_bytes, "--max-total-bytes");
  }
  Usage& entry = by_client_[client];
  entry.tasks += tasks;
  entry.bytes += bytes;
  total_.tasks += tasks;
  total_.bytes += bytes;
  return std::make_unique<Hold>(*this, client, Usage{tasks, bytes});
}

void Admission::sent(const PeerId& client, std::size_t bytes) {
  by_client_[client].unread += bytes;
  total_.unread += bytes;
}

void Admission::read(const PeerId& client, std::size_t bytes) noexcept {
  const auto found = by_client_.find(client);
  if (found == by_client_.end()) return;
  bytes = std::min(bytes, found->second.unread);
  found->second.unread -= bytes;
  total_.unread -= bytes;
  forget_if_empty(found);
}

bool Admission::behind(const PeerId& client) const {
  if (total_.unread <= config_.max_client_unread_bytes) return false;  // the usual case: no lookup
  return total_.unread > config_.max_total_unread_bytes || of(client).unread > config_.max_client_unread_bytes;
}

Admission::Usage Admission::of(const PeerId& client) const {
  const auto found = by_client_.find(client);
  return found == by_client_.end() ? Usage{} : found->second;
}

void Admission::release(const PeerId& client, Usage usage) noexcept {
  total_.tasks -= usage.tasks;
  total_.bytes -= usage.bytes;
  const auto found = by_client_.find(client);
  if (found == by_client_.end()) return;
  found->second.tasks -= usage.tasks;
  found->second.bytes -= usage.bytes;
  forget_if_empty(found);
}

void Admission::forget_if_empty(std::unordered_map<PeerId, Usage>::iterator entry) noexcept {
  if (entry->second.tasks == 0 && entry->second.bytes == 0 && entry->second.unread == 0) by_client_.erase(entry);
}

}  // namespace fanout::broker
