// job_inputs.cpp
#include "job_inputs.hpp"

#include <algorithm>
#include <limits>
#include <random>
#include <utility>

#include <fanout/error.hpp>

namespace fanout::tool {

namespace {

// --header without --colsep splits the header (and the records) on TAB, as GNU parallel does.
ColumnSplitter make_splitter(const RunOptions& options) {
  if (options.colsep) return ColumnSplitter(*options.colsep);
  if (options.header) return ColumnSplitter("\\t");
  return ColumnSplitter();
}

}  // namespace

// ---- one file source, read as needed ------------------------------------------------------------

class JobInputs::Stream {
 public:
  Stream(const std::string& path, const std::string& delimiter, bool header)
      : reader(path, delimiter), header_pending(header) {}
  RecordReader reader;
  bool header_pending;
};

// ---- sources read whole, combined by index ------------------------------------------------------

class JobInputs::Crossed {
 public:
  Crossed(const RunOptions& options, const ColumnSplitter& splitter, std::vector<std::string>& names) {
    for (const InputSource& source : options.sources) {
      std::vector<std::string> values = source.words;
      if (source.kind == InputSource::Kind::file) {
        RecordReader reader(source.path, options.delimiter);
        reader.read_all();
        values.assign(std::make_move_iterator(reader.records().begin()), std::make_move_iterator(reader.records().end()));
      }
      std::vector<Record> records;
      records.reserve(values.size());
      for (std::size_t v = 0; v < values.size(); ++v) {
        Record columns = splitter.split(values[v]);
        if (options.header && v == 0) {
          names.insert(names.end(), columns.begin(), columns.end());
          continue;
        }
        records.push_back(std::move(columns));
      }
      if (groups_.empty() || (!options.link_all && !source.linked)) groups_.emplace_back();
      groups_.back().push_back(sources_.size());
      sources_.push_back(std::move(records));
    }
    wrap_ = options.link_all;
    total_ = groups_.empty() ? 0 : 1;
    for (const auto& group : groups_) {
      // Paired with :::+, the shortest source decides; with --link, the longest (the others wrap).
      std::size_t length = wrap_ ? 0 : std::numeric_limits<std::size_t>::max();
      bool any_empty = false;
      for (const std::size_t s : group) {
        length = wrap_ ? std::max(length, sources_[s].size()) : std::min(length, sources_[s].size());
        any_empty = any_empty || sources_[s].empty();
      }
      if (any_empty) length = 0;
      lengths_.push_back(length);
      if (length != 0 && total_ > std::numeric_limits<std::size_t>::max() / length) {
        throw UsageError("the input sources make too many combinations");
      }
      total_ *= length;
    }
  }

  bool get(Record& out) {
    if (next_ >= total_) return false;
    std::size_t index = next_++;
    rows_.resize(groups_.size());
    for (std::size_t g = groups_.size(); g-- > 0;) {
      rows_[g] = index % lengths_[g];
      index /= lengths_[g];
    }
    out.clear();
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      for (const std::size_t s : groups_[g]) {
        const auto& records = sources_[s];
        const Record& record = records[rows_[g] % records.size()];  // wraps only with --link
        out.insert(out.end(), record.begin(), record.end());
      }
    }
    return true;
  }

  bool at_end() const noexcept { return next_ >= total_; }
  std::size_t total() const noexcept { return total_; }

 private:
  std::vector<std::vector<Record>> sources_;
  std::vector<std::vector<std::size_t>> groups_;  // sources paired with each other
  std::vector<std::size_t> lengths_;              // records of each group
  std::vector<std::size_t> rows_;
  bool wrap_ = false;
  std::size_t total_ = 0;
  std::size_t next_ = 0;
};

// ---- JobInputs ----------------------------------------------------------------------------------

JobInputs::JobInputs(const RunOptions& options) : options_(options), splitter_(make_splitter(options)) {
  const bool one_file = options.sources.size() == 1 && options.sources.front().kind == InputSource::Kind::file;
  if (options.sources.empty() || one_file) {
    stream_ = std::make_unique<Stream>(options.sources.empty() ? "-" : options.sources.front().path, options.delimiter,
                                       options.header);
  } else {
    crossed_ = std::make_unique<Crossed>(options, splitter_, names_);
  }
}

JobInputs::~JobInputs() = default;

bool JobInputs::header_known() const {
  return !stream_ || !stream_->header_pending || (stream_->reader.eof() && stream_->reader.records().empty());
}

void JobInputs::take_header() {
  if (!stream_ || !stream_->header_pending || stream_->reader.records().empty()) return;
  names_ = splitter_.split(stream_->reader.records().front());
  stream_->reader.records().pop_front();
  stream_->header_pending = false;
}

void JobInputs::set_line_measure(std::function<std::size_t(const std::string&)> cost, std::size_t base,
                                 std::size_t limit, std::size_t slots) {
  cost_ = std::move(cost);
  base_length_ = base;
  line_limit_ = limit;
  slots_ = std::max<std::size_t>(1, slots);
}

int JobInputs::pollable_fd() const { return stream_ && !stream_->reader.eof() ? stream_->reader.fd() : -1; }

bool JobInputs::wants_read(std::size_t ahead) const {
  if (!stream_ || stream_->reader.eof()) return false;
  // --shuf needs everything before the first job; -m / -X a command line's worth (a record takes
  // at least two bytes of one, so a line holds at most half its length in records).
  if (options_.shuffle || stream_->header_pending) return true;
  const std::size_t line = options_.packing == ArgumentPacking::fixed ? 0 : line_limit_ / 2 + 1;
  return stream_->reader.records().size() < ahead + line;
}

void JobInputs::read_some() {
  if (!stream_) return;
  stream_->reader.read_some();
  take_header();
}

// One record from the sources, before --shuf.
bool JobInputs::next_record(Record& out) {
  take_header();
  if (options_.shuffle) {
    if (!shuffled_ready_) {
      for (Record record; crossed_ ? crossed_->get(record) : false;) shuffled_.push_back(std::move(record));
      if (stream_) {
        if (!stream_->reader.eof()) return false;
        stream_->header_pending = false;
        for (auto& line : stream_->reader.records()) shuffled_.push_back(splitter_.split(line));
        stream_->reader.records().clear();
      }
      std::shuffle(shuffled_.begin(), shuffled_.end(), std::mt19937_64(std::random_device{}()));
      shuffled_ready_ = true;
    }
    if (shuffled_next_ >= shuffled_.size()) return false;
    out = std::move(shuffled_[shuffled_next_++]);
    return true;
  }
  if (crossed_) return crossed_->get(out);
  auto& records = stream_->reader.records();
  if (records.empty() || stream_->header_pending) return false;
  out = splitter_.split(records.front());
  records.pop_front();
  return true;
}

bool JobInputs::records_at_end() const {
  if (options_.shuffle && shuffled_ready_) return shuffled_next_ >= shuffled_.size();
  if (options_.shuffle) return false;
  if (crossed_) return crossed_->at_end();
  return stream_->reader.eof() && stream_->reader.records().empty();
}

bool JobInputs::exhausted() const { return pushed_back_.empty() && partial_.empty() && records_at_end(); }

bool JobInputs::next(std::vector<Record>& out) {
  if (options_.packing != ArgumentPacking::fixed) return next_packed(out);
  // -N n: n records a job (fewer for the last); -N0: one record a job, none of it used.
  const std::size_t wanted = std::max<std::size_t>(1, options_.arguments_per_job);
  for (Record record; partial_.size() < wanted && next_record(record);) partial_.push_back(std::move(record));
  if (partial_.empty() || (partial_.size() < wanted && !records_at_end())) return false;
  out = std::move(partial_);
  partial_.clear();
  if (options_.arguments_per_job == 0) out.clear();
  ++handed_out_;
  return true;
}

// -m / -X, as GNU parallel's CommandLine::populate: records until the line is full (a record that
// would make it reach the limit goes back); when the input ends while a job fills, that job's
// records are spread evenly over the job slots, and every later job takes as many.
bool JobInputs::next_packed(std::vector<Record>& out) {
  const auto cost_of = [&](const Record& record) {
    std::size_t cost = 0;
    for (const auto& value : record) cost += cost_ ? cost_(value) : value.size() + 1;
    return cost;
  };
  std::size_t length = base_length_;
  for (const Record& record : partial_) length += cost_of(record);
  for (;;) {
    if (per_job_ != 0 && partial_.size() >= per_job_) break;
    Record record;
    if (!pushed_back_.empty()) {
      record = std::move(pushed_back_.back());
      pushed_back_.pop_back();
    } else if (!next_record(record)) {
      if (records_at_end()) break;
      return false;  // more input is needed before this job is complete
    }
    const std::size_t cost = cost_of(record);
    if (line_limit_ != 0 && length + cost >= line_limit_) {
      if (partial_.empty()) {
        throw Error("command line too long (" + std::to_string(length + cost) + " >= " + std::to_string(line_limit_) +
                    " bytes) with the argument '" + (record.empty() ? std::string() : record.front().substr(0, 50)) + "'");
      }
      pushed_back_.push_back(std::move(record));
      break;
    }
    length += cost;
    partial_.push_back(std::move(record));
  }
  if (partial_.empty()) return false;
  if (!spread_ && pushed_back_.empty() && records_at_end() && partial_.size() > 1) {
    spread_ = true;
    per_job_ = (partial_.size() + slots_ - 1) / slots_;
    while (partial_.size() > per_job_) {
      pushed_back_.push_back(std::move(partial_.back()));
      partial_.pop_back();
    }
  }
  out = std::move(partial_);
  partial_.clear();
  ++handed_out_;
  return true;
}

std::optional<std::size_t> JobInputs::total(std::size_t started) const {
  if (options_.packing != ArgumentPacking::fixed) return exhausted() ? std::optional<std::size_t>(started) : std::nullopt;
  const std::size_t per_job = std::max<std::size_t>(1, options_.arguments_per_job);
  std::size_t records = 0;
  if (options_.shuffle) {
    if (!shuffled_ready_) return std::nullopt;
    records = shuffled_.size() - shuffled_next_;
  } else if (crossed_) {
    return (crossed_->total() + per_job - 1) / per_job;
  } else {
    if (!stream_->reader.eof()) return std::nullopt;
    records = stream_->reader.records().size();
  }
  records += partial_.size();
  return started + (records + per_job - 1) / per_job;
}

}  // namespace fanout::tool
