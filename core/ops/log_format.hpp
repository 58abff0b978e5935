// log_format.hpp: how fanout-broker and fanout-worker write their log lines (`--log-format`, env
// FANOUT_LOG_FORMAT): `text`, spdlog's pattern as each main sets it, or `json`, one JSON object
// per line for a log collector:
//   {"time":"2026-11-30T10:21:08.123Z","level":"info","message":"...","logger":"fanout-broker","pid":42,"thread":43}
// `time` is UTC with milliseconds (RFC 3339); `level` is spdlog's name (trace, debug, info,
// warning, error, critical); the other keys are fields of the line's origin. Keys are never
// renamed; new ones may be added.
//
// Promises: every line is one valid JSON object, whatever the message holds (quotes, backslashes,
// control characters, bytes that are not UTF-8 are escaped), so a peer's text cannot forge a line
// or a field.
#pragma once

#include <memory>
#include <string>

#include <spdlog/formatter.h>
#include <spdlog/logger.h>

namespace fanout::ops {

enum class LogFormat { text, json };

// "text" or "json"; throws fanout::Error naming `name` and the choices otherwise.
LogFormat parse_log_format(const std::string& name);

// The formatter of `json` lines.
std::unique_ptr<spdlog::formatter> json_log_formatter();

// Sets `logger`'s format: `json` replaces its pattern; `text` leaves it as the main set it.
void use_log_format(spdlog::logger& logger, LogFormat format);

}  // namespace fanout::ops
