// fanout/receipt.hpp: what `defer` hands back once a batch is safe.
//
//   const fanout::Receipt receipt = fanout::Concurrency::defer(square(5), square(6));
//   std::cout << receipt << '\n';   // r-1f3a... (process driver, 2 tasks)
//
// The id names the batch where it went: for the process driver it is the broker's receipt, the one
// `fanout deferred` looks up; "fork-<pid>" is the detached runner process; "sync-<n>" counts the
// batches the sync driver ran inline in this process.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

namespace fanout {

class Receipt {
 public:
  Receipt(std::string id, std::string driver, std::size_t tasks)
      : id_(std::move(id)), driver_(std::move(driver)), tasks_(tasks) {}

  // The batch's id; empty only for an empty batch, which starts nothing and has nothing to look up.
  const std::string& id() const noexcept { return id_; }
  // The driver that took the batch: "process", "fork" or "sync".
  const std::string& driver() const noexcept { return driver_; }
  // How many tasks the batch holds.
  std::size_t tasks() const noexcept { return tasks_; }

  friend bool operator==(const Receipt&, const Receipt&) = default;

 private:
  std::string id_;
  std::string driver_;
  std::size_t tasks_;
};

// "<id> (<driver> driver, <n> tasks)"; "(empty batch, <driver> driver)" for an empty batch.
std::string to_string(const Receipt& receipt);
std::ostream& operator<<(std::ostream& out, const Receipt& receipt);

}  // namespace fanout
