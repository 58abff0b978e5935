// job_printer.cpp
#include "job_printer.hpp"

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace fanout::tool {

namespace {

// `text` with `tag` and a TAB before every line (a last line without newline too).
std::string tagged(std::string_view text, const std::string& tag) {
  std::string out;
  out.reserve(text.size() + tag.size() + 2);
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    out += tag;
    out += '\t';
    out.append(text.substr(start, end - start));
    start = end;
  }
  return out;
}

}  // namespace

void Sink::write(std::string_view text) {
  while (!text.empty() && !closed_) {
    const ssize_t wrote = ::write(fd_, text.data(), text.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) {
      closed_ = true;
      return;
    }
    text.remove_prefix(static_cast<std::size_t>(wrote));
  }
}

JobPrinter::JobPrinter(OutputMode mode, bool keep_order, bool tag, Sink& out, Sink& err,
                       std::function<void()> before_writing)
    : mode_(mode),
      keep_order_(keep_order && mode != OutputMode::ungroup),  // -u prints as it comes, whatever -k says
      tag_(tag && mode != OutputMode::ungroup),
      out_(out),
      err_(err),
      before_writing_(std::move(before_writing)) {}

void JobPrinter::print(std::string_view out, std::string_view err, const std::string& tag) {
  if (out.empty() && err.empty()) return;
  before_writing_();
  if (tag_) {
    if (!out.empty()) out_.write(tagged(out, tag));
    if (!err.empty()) err_.write(tagged(err, tag));
  } else {
    out_.write(out);
    err_.write(err);
  }
}

void JobPrinter::print_lines(Job& job) {
  const auto out_end = job.out.rfind('\n');
  const auto err_end = job.err.rfind('\n');
  const std::string_view out =
      out_end == std::string::npos ? std::string_view() : std::string_view(job.out).substr(0, out_end + 1);
  const std::string_view err =
      err_end == std::string::npos ? std::string_view() : std::string_view(job.err).substr(0, err_end + 1);
  print(out, err, job.tag);
  if (out_end != std::string::npos) job.out.erase(0, out_end + 1);
  if (err_end != std::string::npos) job.err.erase(0, err_end + 1);
}

void JobPrinter::started(std::size_t seq, std::string tag, const std::string& command_line) {
  Job& job = jobs_[seq];
  job.tag = std::move(tag);
  if (command_line.empty()) return;
  if (mode_ == OutputMode::group) {
    job.command_line = command_line + "\n";
  } else if (mode_ == OutputMode::ungroup) {
    print(command_line + "\n", {}, job.tag);
  } else {
    job.out = command_line + "\n";
    if (may_print(seq)) print_lines(job);
  }
}

void JobPrinter::output(std::size_t seq, OutputType type, std::string_view text) {
  if (mode_ == OutputMode::ungroup) {
    print(type == OutputType::out ? text : std::string_view(), type == OutputType::err ? text : std::string_view(), {});
    return;
  }
  const auto found = jobs_.find(seq);
  if (found == jobs_.end()) return;
  Job& job = found->second;
  (type == OutputType::out ? job.out : job.err).append(text);
  if (may_print(seq) && text.find('\n') != std::string_view::npos) print_lines(job);
}

void JobPrinter::restarting(std::size_t seq) {
  const auto found = jobs_.find(seq);
  if (found == jobs_.end()) return;
  found->second.out.clear();
  found->second.err.clear();
}

void JobPrinter::finished(std::size_t seq, const std::string& out, const std::string& err, bool print_it) {
  Ready ready;
  ready.print = print_it;
  const auto found = jobs_.find(seq);
  if (found != jobs_.end()) {
    Job& job = found->second;
    ready.tag = std::move(job.tag);
    if (mode_ == OutputMode::group) {
      ready.out = std::move(job.command_line);
      ready.out += out;
      ready.err = err;
    } else if (mode_ == OutputMode::line_buffer) {
      ready.out = std::move(job.out);
      ready.err = std::move(job.err);
    }
    jobs_.erase(found);
  }
  if (!keep_order_) {
    if (ready.print) print(ready.out, ready.err, ready.tag);
    return;
  }
  ready_.emplace(seq, std::move(ready));
  release_in_order();
}

void JobPrinter::skipped(std::size_t seq) {
  if (!keep_order_) return;
  Ready nothing;
  nothing.print = false;
  ready_.emplace(seq, std::move(nothing));
  release_in_order();
}

void JobPrinter::print_now(std::string_view out) {
  if (out.empty()) return;
  before_writing_();
  out_.write(out);
}

// -k: prints every finished job whose turn has come; the next one, if running, may stream now.
void JobPrinter::release_in_order() {
  for (auto next = ready_.find(next_to_print_); next != ready_.end(); next = ready_.find(next_to_print_)) {
    if (next->second.print) print(next->second.out, next->second.err, next->second.tag);
    ready_.erase(next);
    ++next_to_print_;
  }
  if (mode_ == OutputMode::line_buffer) {
    const auto head = jobs_.find(next_to_print_);
    if (head != jobs_.end()) print_lines(head->second);
  }
}

}  // namespace fanout::tool
