// local_services.cpp
#include "local_services.hpp"

#include <signal.h>

#include <algorithm>
#include <system_error>
#include <utility>

#include "test_support.hpp"

namespace fanout_test {

namespace {

constexpr std::string_view kPidMarker = "fanout service pid ";

std::size_t count_of(const std::string& text, std::string_view what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

}  // namespace

LocalServices::LocalServices(std::filesystem::path state_dir) : state_dir_(std::move(state_dir)) {}

LocalServices::~LocalServices() {
  for (const pid_t pid : pids()) ::kill(pid, SIGKILL);
}

std::string LocalServices::logs() const {
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(state_dir_, error)) {
    if (entry.path().filename() == "service.log") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& file : files) text += read_file(file);
  return text;
}

bool LocalServices::serving() const {
  const auto text = logs();
  const auto serving = text.rfind("serving");
  const auto stopping = text.rfind("stopping");
  return serving != std::string::npos && (stopping == std::string::npos || stopping < serving);
}

std::size_t LocalServices::starts() const { return count_of(logs(), "serving"); }

pid_t LocalServices::latest_pid() const {
  const auto found = pids();
  return found.empty() ? 0 : found.back();
}

std::vector<pid_t> LocalServices::pids() const {
  std::vector<pid_t> found;
  const auto text = logs();
  for (auto at = text.find(kPidMarker); at != std::string::npos; at = text.find(kPidMarker, at + 1)) {
    found.push_back(static_cast<pid_t>(std::stol(text.substr(at + kPidMarker.size()))));
  }
  return found;
}

}  // namespace fanout_test
