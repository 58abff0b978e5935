// broker_thread.cpp
#include "broker_thread.hpp"

#include <pthread.h>
#include <time.h>

#include <exception>
#include <utility>

#include <kj/exception.h>

namespace fanout_test {

RunningBroker::RunningBroker(fanout::broker::Config config, zmq::context_t& context)
    : broker_(std::move(config), context), thread_([this] { serve(); }) {}

RunningBroker::~RunningBroker() {
  broker_.stop();
  thread_.join();
}

std::chrono::duration<double> RunningBroker::cpu_time() {
  clockid_t clock{};
  timespec used{};
  if (::pthread_getcpuclockid(thread_.native_handle(), &clock) != 0 || ::clock_gettime(clock, &used) != 0) return {};
  return std::chrono::seconds(used.tv_sec) + std::chrono::nanoseconds(used.tv_nsec);
}

std::string RunningBroker::died() const {
  std::lock_guard lock(mutex_);
  return died_;
}

void RunningBroker::serve() {
  try {
    broker_.run();
  } catch (const kj::Exception& error) {
    record(std::string("kj::Exception: ") + error.getDescription().cStr());
  } catch (const std::exception& error) {
    record(std::string("exception: ") + error.what());
  } catch (...) {
    record("unknown exception");
  }
}

void RunningBroker::record(std::string why) {
  std::lock_guard lock(mutex_);
  died_ = std::move(why);
}

}  // namespace fanout_test
