// receipt.cpp: printing a Receipt.
#include <fanout/receipt.hpp>

#include <ostream>

namespace fanout {

std::string to_string(const Receipt& receipt) {
  if (receipt.id().empty()) return "(empty batch, " + receipt.driver() + " driver)";
  return receipt.id() + " (" + receipt.driver() + " driver, " + std::to_string(receipt.tasks()) +
         (receipt.tasks() == 1 ? " task)" : " tasks)");
}

std::ostream& operator<<(std::ostream& out, const Receipt& receipt) { return out << to_string(receipt); }

}  // namespace fanout
