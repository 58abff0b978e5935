// local_services.hpp: the local services (a program's own service for deferred batches in local
// mode) started under a state directory (XDG_STATE_HOME), seen through their logs,
// <state>/fanout/<program>/service.log. They are detached from whoever started them: the
// destructor kills every service the logs name, since nobody else would if a test failed.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace fanout_test {

class LocalServices {
 public:
  explicit LocalServices(std::filesystem::path state_dir);
  ~LocalServices();
  LocalServices(const LocalServices&) = delete;
  LocalServices& operator=(const LocalServices&) = delete;

  // Every service log under the state directory, one after the other.
  std::string logs() const;
  // Whether the latest service has said it serves and not yet that it stops.
  bool serving() const;
  // How many times a service has started serving.
  std::size_t starts() const;
  // The pid of the latest service to start; 0 when none has.
  pid_t latest_pid() const;

 private:
  std::vector<pid_t> pids() const;

  std::filesystem::path state_dir_;
};

}  // namespace fanout_test
