// input_records.cpp
#include "input_records.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fanout/error.hpp>

#include "run_command.hpp"

namespace fanout::tool {

RecordReader::RecordReader(const std::string& path, std::string delimiter)
    : name_(path == "-" ? "stdin" : path), delimiter_(std::move(delimiter)) {
  if (path == "-") {
    fd_ = STDIN_FILENO;
    return;
  }
  owned_ = sys::UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!owned_) throw UsageError("cannot open input file " + path + ": " + std::strerror(errno));
  fd_ = owned_.get();
}

void RecordReader::read_some() {
  if (eof_) return;
  char buffer[65536];
  ssize_t got = 0;
  do {
    got = ::read(fd_, buffer, sizeof(buffer));
  } while (got < 0 && errno == EINTR);
  if (got < 0 && errno == EAGAIN) return;
  if (got < 0) throw Error("cannot read " + name_ + ": " + std::strerror(errno));
  if (got == 0) {
    eof_ = true;
    if (!partial_.empty()) records_.push_back(std::move(partial_));
    partial_.clear();
    return;
  }
  partial_.append(buffer, static_cast<std::size_t>(got));
  // Search only what is new (less a delimiter's length, which may straddle two reads).
  std::size_t from = scanned_ >= delimiter_.size() ? scanned_ - delimiter_.size() + 1 : 0;
  std::size_t start = 0;
  for (auto at = partial_.find(delimiter_, from); at != std::string::npos; at = partial_.find(delimiter_, from)) {
    records_.emplace_back(partial_, start, at - start);
    start = at + delimiter_.size();
    from = start;
  }
  partial_.erase(0, start);
  scanned_ = partial_.size();
}

void RecordReader::read_all() {
  while (!eof_) read_some();
}

ColumnSplitter::ColumnSplitter(const std::string& pattern)
    : splits_(true), literal_(pattern == "\\t" ? std::string(1, '\t') : pattern) {
  if (pattern == "\\t" || pattern.find_first_of(".^$|()[]{}*+?\\") == std::string::npos) return;
  try {
    regex_.emplace(pattern, std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error& error) {
    throw UsageError("--colsep '" + pattern + "': not a regular expression (" + error.what() + ")");
  }
}

std::vector<std::string> ColumnSplitter::split(const std::string& record) const {
  if (!splits_) return {record};
  std::vector<std::string> columns;
  if (regex_) {
    std::size_t start = 0;
    for (std::sregex_iterator match(record.begin(), record.end(), *regex_), end; match != end; ++match) {
      const auto at = static_cast<std::size_t>(match->position());
      if (match->length() == 0) continue;  // a separator that matches nothing separates nothing
      columns.push_back(record.substr(start, at - start));
      start = at + static_cast<std::size_t>(match->length());
    }
    columns.push_back(record.substr(start));
    return columns;
  }
  std::size_t start = 0;
  for (auto at = record.find(literal_); at != std::string::npos; at = record.find(literal_, start)) {
    columns.push_back(record.substr(start, at - start));
    start = at + literal_.size();
  }
  columns.push_back(record.substr(start));
  return columns;
}

}  // namespace fanout::tool
