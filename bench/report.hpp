// report.hpp: the table fanout-bench prints (bench/README.md says what each column means).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace fanout_bench {

// The 1-minute load average, as /proc/loadavg gives it ("unknown" when it cannot be read).
std::string load_average();

// Figures as the tables print them, "—" for nothing:
// "1,007" for large figures, "3.4" where a decimal still means something.
std::string format_figure(std::optional<double> value);
// Rates to three significant digits: the rest is noise on this machine.
std::string format_rate(std::optional<double> value);
// Milliseconds with one decimal: "12.3".
std::string format_ms(std::optional<double> value);

// The table of `rows`, what it measured, and the verdicts against the goals, on stdout.
void print_report(const std::vector<Row>& rows, const Settings& settings, const std::string& load_average);

}  // namespace fanout_bench
