// failure.cpp
#include "failure.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string_view>
#include <typeinfo>
#include <utility>

#include <kj/exception.h>

#include <fanout/task.hpp>

namespace fanout::detail {

std::string demangle(const char* mangled) {
  if (mangled == nullptr) return "unknown";
  int status = 0;
  const std::unique_ptr<char, decltype(&std::free)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                                         &std::free);
  std::string text = status == 0 && name ? name.get() : mangled;
  // Spell standard types the way users write them, not the way the ABI does.
  static const std::pair<std::string_view, std::string_view> kAliases[] = {
      {"std::__cxx11::", "std::"},
      {"std::__1::", "std::"},
      {"std::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string"},
  };
  for (const auto& [noise, plain] : kAliases) {
    for (auto at = text.find(noise); at != std::string::npos; at = text.find(noise, at + plain.size())) {
      text.replace(at, noise.size(), plain);
    }
  }
  return text;
}

FailureInfo failure_from_current_exception(std::string ran_on) {
  FailureInfo failure;
  failure.ran_on = std::move(ran_on);
  try {
    throw;
  } catch (const UnknownTask& error) {
    failure.kind = ErrorKind::unknown_task;
    failure.message = error.what();
  } catch (const BadArguments& error) {
    failure.kind = ErrorKind::bad_arguments;
    failure.message = error.what();
  } catch (const std::exception& error) {
    failure.kind = ErrorKind::exception;
    failure.remote_type = demangle(typeid(error).name());
    failure.message = error.what();
  } catch (const kj::Exception& error) {
    failure.kind = ErrorKind::exception;
    failure.remote_type = "kj::Exception";
    failure.message = error.getDescription().cStr();
  } catch (...) {
    failure.kind = ErrorKind::exception;
    const std::type_info* type = abi::__cxa_current_exception_type();
    failure.remote_type = type != nullptr ? demangle(type->name()) : "unknown";
    failure.message = "a value of type " + failure.remote_type + " was thrown";
  }
  return failure;
}

}  // namespace fanout::detail
