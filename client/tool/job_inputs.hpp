// job_inputs.hpp: the arguments of each job, from the input sources, in GNU parallel's order.
//
// A record is one combination of the sources' values, flattened into columns: one value per
// source, or several per source with --colsep. Sources are crossed (the last one varies fastest),
// except that :::+ / ::::+ pair a source with the one before it (the shortest decides how many)
// and --link pairs them all (the shorter ones wrap around). A job takes one record, or -N of them,
// or (-m / -X) as many as fit on a command line, spread evenly over the job slots when the whole
// input fits.
//
// One file source (stdin by default) is read as the jobs need it, through the caller's poll loop:
// a producer that never ends is fine and memory stays bounded by what is in flight. Several
// sources are read whole first, as crossing them needs; --shuf reads everything first too.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "input_records.hpp"
#include "run_options.hpp"

namespace fanout::tool {

using Record = std::vector<std::string>;

class JobInputs {
 public:
  // Opens every file source (throws UsageError for one that cannot be opened) and reads them
  // whole when there are several.
  explicit JobInputs(const RunOptions& options);
  ~JobInputs();
  JobInputs(const JobInputs&) = delete;
  JobInputs& operator=(const JobInputs&) = delete;

  // --header : the column names, known once the first record of each source is in.
  bool header_known() const;
  const std::vector<std::string>& column_names() const noexcept { return names_; }

  // -m / -X: how long a job's command line gets: `base` plus cost(value) for each argument, at
  // most `limit`; `slots` is -j, over which the arguments are spread when they all fit.
  void set_line_measure(std::function<std::size_t(const std::string&)> cost, std::size_t base, std::size_t limit,
                        std::size_t slots);

  // The next job's records into `out`; false when none is ready now (see exhausted()). Throws
  // fanout::Error when a single argument makes a command line too long (-m / -X).
  bool next(std::vector<Record>& out);
  // Every job has been handed out.
  bool exhausted() const;
  // The descriptor the caller should poll for more input, or -1; whether more input is wanted
  // now (fewer than `ahead` records waiting).
  int pollable_fd() const;
  bool wants_read(std::size_t ahead) const;
  void read_some();
  // Jobs in all, once known (`started`: handed out so far).
  std::optional<std::size_t> total(std::size_t started) const;

 private:
  class Stream;   // one file source, read as needed
  class Crossed;  // sources read whole, combined by index
  bool next_record(Record& out);
  bool records_at_end() const;
  bool next_packed(std::vector<Record>& out);
  void take_header();

  const RunOptions& options_;
  ColumnSplitter splitter_;
  std::vector<std::string> names_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Crossed> crossed_;

  std::vector<Record> shuffled_;  // --shuf: every record, in random order
  std::size_t shuffled_next_ = 0;
  bool shuffled_ready_ = false;

  std::vector<Record> partial_;      // the records of a job not complete yet (waiting for input)
  std::vector<Record> pushed_back_;  // -m / -X: records taken and given back, the next one last
  std::function<std::size_t(const std::string&)> cost_;
  std::size_t base_length_ = 0;
  std::size_t line_limit_ = 0;
  std::size_t slots_ = 1;
  std::size_t per_job_ = 0;  // -m / -X after spreading; 0: as many as fit
  bool spread_ = false;
  std::size_t handed_out_ = 0;
};

}  // namespace fanout::tool
