// report.hpp: the table fanout-bench prints (bench/README.md says what each column means).
#pragma once

#include <string>
#include <vector>

#include "bench_common.hpp"

namespace fanout_bench {

// The 1-minute load average, as /proc/loadavg gives it ("unknown" when it cannot be read).
std::string load_average();

// The table of `rows`, what it measured, and the verdicts against the goals, on stdout.
void print_report(const std::vector<Row>& rows, const Settings& settings, const std::string& load_average);

}  // namespace fanout_bench
