// fanout/error.hpp: the base of every error fanout itself throws.
#pragma once

#include <stdexcept>
#include <string>

namespace fanout {

// Logistics failures (bad configuration, cannot start, cannot decode) are thrown as fanout::Error.
// A task's own failure is a fanout::TaskError (see task_error.hpp), which derives from it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value on the wire is not of the C++ type it is being read into. Both types are named in
// what(): "expected vector<int32>, got list<text>".
class TypeMismatch : public Error {
 public:
  TypeMismatch(std::string expected, std::string actual, std::string detail = {});

  const std::string& expected() const noexcept { return expected_; }
  const std::string& actual() const noexcept { return actual_; }

 private:
  std::string expected_;
  std::string actual_;
};

}  // namespace fanout
