// run_command.cpp: the rules of `fanout run` that need no processes: halt policies, command
// templates, ::: combinations, joblog lines and exit statuses. The loop is in run_loop.cpp.
#include "run_command.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <optional>
#include <utility>

#include "shell_quote.hpp"

namespace fanout::tool {

namespace {

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

std::size_t parse_count(std::string_view text, std::string_view context) {
  if (!all_digits(text) || text.size() > 9) {
    throw UsageError("--halt " + std::string(context) + ": expected a number of jobs, not '" + std::string(text) +
                     "'" + (text.find('%') != std::string_view::npos ? " (percentages are not supported)" : ""));
  }
  return static_cast<std::size_t>(std::stoul(std::string(text)));
}

}  // namespace

HaltPolicy HaltPolicy::parse(std::string_view text) {
  HaltPolicy policy;
  if (text == "never" || text == "0") return policy;
  if (text == "1") return HaltPolicy{When::soon, Why::fail, 1};
  if (text == "2") return HaltPolicy{When::now, Why::fail, 1};
  const auto comma = text.find(',');
  const std::string_view when = text.substr(0, comma);
  if (when == "soon") {
    policy.when = When::soon;
  } else if (when == "now") {
    policy.when = When::now;
  } else {
    throw UsageError("--halt " + std::string(text) + ": expected never, soon,fail=N or now,fail=N (also success=N, done=N)");
  }
  if (comma == std::string_view::npos) throw UsageError("--halt " + std::string(text) + ": say why, e.g. " + std::string(when) + ",fail=1");
  const std::string_view why = text.substr(comma + 1);
  const auto equals = why.find('=');
  const std::string_view name = why.substr(0, equals);
  if (name == "fail") {
    policy.why = Why::fail;
  } else if (name == "success") {
    policy.why = Why::success;
  } else if (name == "done") {
    policy.why = Why::done;
  } else {
    throw UsageError("--halt " + std::string(text) + ": expected fail=N, success=N or done=N after the comma");
  }
  if (equals == std::string_view::npos) throw UsageError("--halt " + std::string(text) + ": missing =N");
  policy.count = parse_count(why.substr(equals + 1), text);
  if (policy.count == 0) throw UsageError("--halt " + std::string(text) + ": N must be at least 1");
  return policy;
}

// ---- templates --------------------------------------------------------------------------------

CommandTemplate::CommandTemplate(std::string text) {
  bool any_placeholder = false;
  std::string literal;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      const auto close = text.find('}', i + 1);
      if (close != std::string::npos) {
        const std::string_view inside = std::string_view(text).substr(i + 1, close - i - 1);
        std::optional<Part> part;
        if (inside.empty()) {
          part = Part{Part::Kind::all_arguments, {}, 0};
        } else if (inside == "#") {
          part = Part{Part::Kind::seq, {}, 0};
        } else if (all_digits(inside) && inside.size() < 6 && inside != "0" && inside[0] != '0') {
          part = Part{Part::Kind::argument, {}, static_cast<std::size_t>(std::stoul(std::string(inside)))};
          highest_argument_ = std::max(highest_argument_, part->number);
        }
        if (part) {
          if (!literal.empty()) parts_.push_back(Part{Part::Kind::text, std::exchange(literal, {}), 0});
          parts_.push_back(std::move(*part));
          any_placeholder = true;
          i = close + 1;
          continue;
        }
      }
    }
    literal += text[i++];
  }
  if (!any_placeholder) {
    literal += ' ';
    parts_.push_back(Part{Part::Kind::text, std::move(literal), 0});
    parts_.push_back(Part{Part::Kind::all_arguments, {}, 0});
  } else if (!literal.empty()) {
    parts_.push_back(Part{Part::Kind::text, std::move(literal), 0});
  }
}

std::size_t CommandTemplate::highest_argument() const noexcept { return highest_argument_; }

std::string CommandTemplate::expand(std::size_t seq, const std::vector<std::string>& arguments) const {
  std::string line;
  for (const Part& part : parts_) {
    switch (part.kind) {
      case Part::Kind::text:
        line += part.text;
        break;
      case Part::Kind::seq:
        line += std::to_string(seq);
        break;
      case Part::Kind::argument:
        if (part.number <= arguments.size()) line += detail::shell_quote(arguments[part.number - 1]);
        break;
      case Part::Kind::all_arguments:
        for (std::size_t a = 0; a < arguments.size(); ++a) {
          if (a > 0) line += ' ';
          line += detail::shell_quote(arguments[a]);
        }
        break;
    }
  }
  return line;
}

// ---- combinations -----------------------------------------------------------------------------

Combinations::Combinations(std::vector<std::vector<std::string>> groups) : groups_(std::move(groups)) {
  size_ = groups_.empty() ? 0 : 1;
  for (const auto& group : groups_) {
    if (group.empty()) {
      size_ = 0;
      return;
    }
    if (size_ > std::numeric_limits<std::size_t>::max() / group.size()) {
      throw UsageError("the ::: groups make too many combinations");
    }
    size_ *= group.size();
  }
}

void Combinations::get(std::size_t index, std::vector<std::string>& out) const {
  out.resize(groups_.size());
  for (std::size_t g = groups_.size(); g-- > 0;) {
    const auto& group = groups_[g];
    out[g] = group[index % group.size()];
    index /= group.size();
  }
}

// ---- joblog and exit status -------------------------------------------------------------------

std::string joblog_header() { return "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"; }

std::string joblog_host(const std::string& ran_on) {
  if (ran_on.empty() || ran_on.rfind("local", 0) == 0) return ":";
  std::string host = ran_on;
  if (host.rfind("worker ", 0) == 0) host.erase(0, 7);
  const auto pid = host.rfind(" pid ");
  if (pid != std::string::npos && all_digits(std::string_view(host).substr(pid + 5))) host.erase(pid);
  for (char& c : host) {
    if (c == '\t' || c == '\n') c = ' ';
  }
  return host.empty() ? ":" : host;
}

std::string joblog_line(std::size_t seq, const ProcessResult& result, std::chrono::system_clock::time_point started,
                        std::size_t received_bytes) {
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
  char numbers[160];
  std::snprintf(numbers, sizeof(numbers), "%zu\t%s\t%.3f\t%10.3f\t0\t%zu\t%ld\t%d\t", seq,
                joblog_host(result.ran_on()).c_str(), start, runtime, received_bytes, exit_value, signal);
  std::string line = numbers;
  std::string command = result.command();
  for (char& c : command) {
    if (c == '\n') c = '\0';  // as GNU parallel does: one job, one line
  }
  line += command;
  return line;
}

int job_status(const ProcessResult& result) {
  if (result.timed_out()) return kRunExitError;
  return result.exit_code();  // 128+N when signal N ended it
}

void split_command(const std::vector<std::string>& words, RunOptions& options) {
  std::size_t i = 0;
  std::string command;
  for (; i < words.size() && words[i] != ":::"; ++i) {
    if (!command.empty()) command += ' ';
    command += words[i];
  }
  if (command.empty()) throw UsageError("no command given (fanout run [options] 'command {}' ::: arguments)");
  options.command = std::move(command);
  options.groups.clear();
  options.read_stdin = i == words.size();
  for (; i < words.size(); ++i) {
    if (words[i] == ":::") {
      options.groups.emplace_back();
    } else {
      options.groups.back().push_back(words[i]);
    }
  }
}

}  // namespace fanout::tool
