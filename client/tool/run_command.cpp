// run_command.cpp: --halt policies and exit statuses.
#include "run_command.hpp"

#include <string>

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

// ---- exit status ------------------------------------------------------------------------------

int job_status(const ProcessResult& result) {
  if (result.timed_out()) return kRunExitError;
  return result.exit_code();  // 128+N when signal N ended it
}

}  // namespace fanout::tool
