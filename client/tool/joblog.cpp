// joblog.cpp
#include "joblog.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <string_view>
#include <system_error>
#include <vector>

#include "run_command.hpp"

namespace fanout::tool {

namespace {

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

constexpr const char* kHeader = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

}  // namespace

std::string worker_of(const std::string& ran_on) {
  if (ran_on.empty() || ran_on.rfind("local", 0) == 0) return {};
  std::string worker = ran_on;
  if (worker.rfind("worker ", 0) == 0) worker.erase(0, 7);
  const auto pid = worker.rfind(" pid ");
  if (pid != std::string::npos && all_digits(std::string_view(worker).substr(pid + 5))) worker.erase(pid);
  return worker;
}

std::string joblog_host(const std::string& ran_on) {
  std::string host = worker_of(ran_on);
  for (char& c : host) {
    if (c == '\t' || c == '\n') c = ' ';
  }
  return host.empty() ? ":" : host;
}

std::string joblog_line(std::size_t seq, const ProcessResult& result, std::chrono::system_clock::time_point started,
                        std::size_t sent, std::size_t received) {
  const double start = std::chrono::duration<double>(started.time_since_epoch()).count();
  const double runtime = std::chrono::duration<double>(result.elapsed()).count();
  // GNU parallel: a job killed by its timeout has exit value -1; one killed by a signal has exit
  // value 0 and the signal in its own column.
  long exit_value = result.exit_code();
  int signal = result.signal();
  if (result.timed_out()) {
    exit_value = -1;
    if (signal == 0) signal = 15;
  } else if (signal != 0) {
    exit_value = 0;
  }
  char numbers[200];
  std::snprintf(numbers, sizeof(numbers), "%zu\t%s\t%.3f\t%10.3f\t%zu\t%zu\t%ld\t%d\t", seq,
                joblog_host(result.ran_on()).c_str(), start, runtime, sent, received, exit_value, signal);
  std::string line = numbers;
  std::string command = result.command();
  for (char& c : command) {
    if (c == '\n') c = '\0';  // as GNU parallel does: one job, one line
  }
  line += command;
  return line;
}

Joblog::Joblog(const std::string& path, Mode mode) {
  if (path == "-") {
    file_ = stdout;  // as GNU parallel: the joblog on stdout
    std::fprintf(file_, "%s\n", kHeader);
    std::fflush(file_);
    return;
  }
  struct stat info {};
  const bool has_lines = ::stat(path.c_str(), &info) == 0 && info.st_size > 0;
  const bool append = mode == Mode::append || (mode == Mode::append_or_fresh && has_lines);
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr) throw std::system_error(errno, std::generic_category(), "cannot write the joblog " + path);
  owned_ = true;
  if (!append) {
    std::fprintf(file_, "%s\n", kHeader);
    std::fflush(file_);
  }
}

Joblog::~Joblog() {
  if (owned_) std::fclose(file_);
}

void Joblog::write(const std::string& line) {
  if (file_ == nullptr) return;
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

std::unordered_set<std::size_t> finished_jobs(const std::string& path, bool failed_too) {
  std::unordered_set<std::size_t> finished;
  std::ifstream in(path);
  if (!in) return finished;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (number == 1 && line.rfind("Seq\t", 0) == 0) continue;
    // Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
    std::vector<std::string> fields;
    std::size_t start = 0;
    while (fields.size() < 8) {
      const auto tab = line.find('\t', start);
      if (tab == std::string::npos) break;
      fields.push_back(line.substr(start, tab - start));
      start = tab + 1;
    }
    const auto integer = [](const std::string& text) {
      return all_digits(text[0] == '-' ? std::string_view(text).substr(1) : std::string_view(text));
    };
    if (fields.size() < 8 || !all_digits(fields[0]) || fields[0].size() > 18 || fields[6].empty() ||
        !integer(fields[6]) || !all_digits(fields[7])) {
      throw UsageError("--joblog " + path + ": line " + std::to_string(number) + " is not a joblog line: " +
                       line.substr(0, 80));
    }
    const bool succeeded = fields[6] == "0" && fields[7] == "0";
    if (failed_too || succeeded) finished.insert(static_cast<std::size_t>(std::stoull(fields[0])));
  }
  return finished;
}

}  // namespace fanout::tool
