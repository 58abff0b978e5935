// input_records.hpp: the records of an input file or of stdin (one per line, or per -0/-d
// delimiter), read as they come, and --colsep's split of a record into columns.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "system/unique_fd.hpp"

namespace fanout::tool {

// Records of one descriptor: everything up to each delimiter (the delimiter dropped), and what
// follows the last one as a last record. Reads only when told to, so that the caller's poll loop
// decides how far ahead input is read.
class RecordReader {
 public:
  // Opens `path` ("-": stdin, which stays open). Throws UsageError when it cannot be opened.
  RecordReader(const std::string& path, std::string delimiter);
  RecordReader(RecordReader&&) noexcept = default;
  RecordReader& operator=(RecordReader&&) noexcept = default;
  ~RecordReader() = default;

  int fd() const noexcept { return fd_; }
  const std::string& name() const noexcept { return name_; }
  // One read(): the records it completes go to records(). At the end of input, the rest becomes
  // the last record and eof() turns true. Throws fanout::Error when reading fails.
  void read_some();
  // Reads to the end of input (blocking).
  void read_all();
  bool eof() const noexcept { return eof_; }
  std::deque<std::string>& records() noexcept { return records_; }

 private:
  std::string name_;
  sys::UniqueFd owned_;
  int fd_ = -1;
  std::string delimiter_;
  std::string partial_;        // read, not yet a whole record
  std::size_t scanned_ = 0;    // of partial_, searched for the delimiter already
  std::deque<std::string> records_;
  bool eof_ = false;
};

// --colsep: a record's columns. A pattern without regular-expression characters (or "\t") is
// split on as plain text; others as an ECMAScript regular expression (close to Perl's for what
// separators use: \s, \t, +, |, [...]). Every field counts, empty ones too, as in GNU parallel.
class ColumnSplitter {
 public:
  ColumnSplitter() = default;  // no --colsep: a record is one column
  explicit ColumnSplitter(const std::string& pattern);  // throws UsageError for a bad expression
  std::vector<std::string> split(const std::string& record) const;
  bool splits() const noexcept { return splits_; }

 private:
  bool splits_ = false;
  std::string literal_;
  std::optional<std::regex> regex_;
};

}  // namespace fanout::tool
