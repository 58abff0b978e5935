#include "roles.hpp"

#include <algorithm>
#include <system_error>
#include <vector>

#include <fanout/error.hpp>

#include "keys.hpp"

namespace fanout::broker {

std::string_view message_name(wire::Envelope::Which which) {
  switch (which) {
    case wire::Envelope::TASKS: return "tasks";
    case wire::Envelope::CANCEL: return "cancel";
    case wire::Envelope::ANNOUNCE: return "announce";
    case wire::Envelope::RESULTS: return "results";
    case wire::Envelope::HAND_BACK: return "handBack";
    case wire::Envelope::OUTPUT: return "output";
    case wire::Envelope::EXECUTOR_LOST: return "executorLost";
    case wire::Envelope::STATUS_REQUEST: return "statusRequest";
    case wire::Envelope::DEFERRED_REQUEST: return "deferredRequest";
    case wire::Envelope::HEARTBEAT: return "heartbeat";
    case wire::Envelope::BYE: return "bye";
    default: return "other";
  }
}

std::string describe_roles(Roles roles) {
  std::string text;
  const auto add = [&](Role role, const char* name) {
    if ((roles & role) == 0) return;
    if (!text.empty()) text += '+';
    text += name;
  };
  add(kClientRole, "client");
  add(kWorkerRole, "worker");
  add(kAdminRole, "admin");
  return text.empty() ? "none" : text;
}

Roles KeyRing::roles_of(std::string_view key) const {
  const auto found = keys_.find(key);
  return found == keys_.end() ? 0 : found->second.first;
}

void KeyRing::add(const std::string& key, Role role, const std::string& file) {
  auto [entry, fresh] = keys_.try_emplace(key, Roles{0}, file);
  entry->second.first |= role;
}

namespace {

void load_directory(KeyRing& ring, const std::filesystem::path& directory, Role role) {
  if (directory.empty()) return;
  std::error_code error;
  std::vector<std::filesystem::path> files;
  std::filesystem::directory_iterator it(directory, error);
  if (error) {
    throw Error("cannot read the " + describe_roles(role) + " key directory '" + directory.string() + "': " + error.message());
  }
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    if (error) break;
    if (it->path().extension() == ".pub") files.push_back(it->path());
  }
  if (error) {
    throw Error("cannot read the " + describe_roles(role) + " key directory '" + directory.string() + "': " + error.message());
  }
  std::sort(files.begin(), files.end());  // the same file names in the same order every time
  for (const auto& file : files) ring.add(wire::read_public_key(file), role, file.filename().string());
}

std::string shown_key(const std::string& key, const std::string& file) { return file + " (" + key.substr(0, 8) + "...)"; }

}  // namespace

std::shared_ptr<const KeyRing> load_key_ring(const Trust& trust) {
  auto ring = std::make_shared<KeyRing>();
  load_directory(*ring, trust.clients, kClientRole);
  load_directory(*ring, trust.workers, kWorkerRole);
  load_directory(*ring, trust.admins, kAdminRole);
  return ring;
}

std::string describe_changes(const KeyRing& before, const KeyRing& after) {
  std::string added, removed, changed;
  const auto append = [](std::string& list, const std::string& item) { list += (list.empty() ? "" : ", ") + item; };
  for (const auto& [key, entry] : after.keys()) {
    const Roles old = before.roles_of(key);
    if (old == 0) append(added, shown_key(key, entry.second) + " as " + describe_roles(entry.first));
    else if (old != entry.first) append(changed, shown_key(key, entry.second) + " " + describe_roles(old) + " -> " + describe_roles(entry.first));
  }
  for (const auto& [key, entry] : before.keys()) {
    if (!after.contains(key)) append(removed, shown_key(key, entry.second) + " (was " + describe_roles(entry.first) + ")");
  }
  std::string text;
  if (!added.empty()) text += "added " + added;
  if (!removed.empty()) text += std::string(text.empty() ? "" : "; ") + "removed " + removed;
  if (!changed.empty()) text += std::string(text.empty() ? "" : "; ") + "changed " + changed;
  return text;
}

std::optional<RoleRefusal> check_role(wire::Envelope::Which which, Roles roles) {
  const auto need = [&](Role role, Refusal reason, const char* what) -> std::optional<RoleRefusal> {
    if ((roles & role) != 0) return std::nullopt;
    return RoleRefusal{reason, std::string(what) + (role == kAdminRole ? " needs an " : " needs a ") + describe_roles(role) +
                                   " key; this peer's key is " +
                                   (roles == 0 ? "not listed" : "listed as " + describe_roles(roles))};
  };
  switch (which) {
    case wire::Envelope::TASKS: return need(kClientRole, Refusal::not_a_client, "submitting or deferring a batch");
    case wire::Envelope::CANCEL: return need(kClientRole, Refusal::not_a_client, "cancelling a batch");
    case wire::Envelope::ANNOUNCE: return need(kWorkerRole, Refusal::not_a_worker, "announcing as a worker");
    case wire::Envelope::RESULTS:
    case wire::Envelope::HAND_BACK:
    case wire::Envelope::OUTPUT: return need(kWorkerRole, Refusal::not_a_worker, "reporting results or output");
    case wire::Envelope::EXECUTOR_LOST: return need(kWorkerRole, Refusal::not_a_worker, "reporting a lost executor");
    case wire::Envelope::STATUS_REQUEST: return need(kAdminRole, Refusal::not_an_admin, "the broker's status");
    case wire::Envelope::DEFERRED_REQUEST:
      // Clients manage their own deferred batches (DeferredBatches::on_request filters by owner).
      if ((roles & (kClientRole | kAdminRole)) != 0) return std::nullopt;
      return need(kAdminRole, Refusal::not_an_admin, "managing deferred batches");
    default:
      // Heartbeats, bye and what the broker refuses anyway: any listed key.
      if (roles != 0) return std::nullopt;
      return RoleRefusal{Refusal::unknown_key, "this peer's key is not listed (any more) at this broker"};
  }
}

}  // namespace fanout::broker
