#include "ops/log_format.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string_view>

#include <spdlog/details/log_msg.h>
#include <spdlog/fmt/fmt.h>

#include <fanout/error.hpp>

namespace fanout::ops {

namespace {

// Appends `text` as the inside of a JSON string. Bytes of well-formed UTF-8 pass; quotes,
// backslashes and controls are escaped; a byte that starts no well-formed sequence is written as
// U+FFFD, so the line stays valid JSON for any parser.
void append_json_text(spdlog::memory_buf_t& out, std::string_view text) {
  const auto put = [&](std::string_view piece) { out.append(piece.data(), piece.data() + piece.size()); };
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '"') { put("\\\""); ++i; continue; }
    if (byte == '\\') { put("\\\\"); ++i; continue; }
    if (byte == '\n') { put("\\n"); ++i; continue; }
    if (byte == '\r') { put("\\r"); ++i; continue; }
    if (byte == '\t') { put("\\t"); ++i; continue; }
    if (byte < 0x20 || byte == 0x7f) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", byte);
      ++i;
      continue;
    }
    if (byte < 0x80) { out.push_back(static_cast<char>(byte)); ++i; continue; }
    // The length of a well-formed UTF-8 sequence starting here, 0 when there is none.
    std::size_t length = byte >= 0xc2 && byte <= 0xdf ? 2 : byte >= 0xe0 && byte <= 0xef ? 3 : byte >= 0xf0 && byte <= 0xf4 ? 4 : 0;
    if (length != 0 && i + length <= text.size()) {
      for (std::size_t k = 1; k < length; ++k) {
        if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) length = 0;
      }
      // Overlong forms and surrogates are not well-formed either.
      const auto second = length != 0 ? static_cast<unsigned char>(text[i + 1]) : 0;
      if ((byte == 0xe0 && second < 0xa0) || (byte == 0xed && second > 0x9f) || (byte == 0xf0 && second < 0x90) ||
          (byte == 0xf4 && second > 0x8f)) {
        length = 0;
      }
    } else {
      length = 0;
    }
    if (length == 0) {
      put("\\ufffd");
      ++i;
      continue;
    }
    put(text.substr(i, length));
    i += length;
  }
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& message, spdlog::memory_buf_t& out) override {
    const auto since_epoch = message.time.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t whole = static_cast<std::time_t>(seconds.count());
    std::tm utc{};
    gmtime_r(&whole, &utc);
    fmt::format_to(std::back_inserter(out), R"({{"time":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z","level":")",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
    const auto level = spdlog::level::to_string_view(message.level);
    append_json_text(out, std::string_view(level.data(), level.size()));
    out.append(std::string_view(R"(","message":")"));
    append_json_text(out, std::string_view(message.payload.data(), message.payload.size()));
    out.append(std::string_view(R"(","logger":")"));
    append_json_text(out, std::string_view(message.logger_name.data(), message.logger_name.size()));
    fmt::format_to(std::back_inserter(out), R"(","pid":{},"thread":{}}})", pid_, message.thread_id);
    out.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }

 private:
  int pid_ = static_cast<int>(::getpid());
};

}  // namespace

LogFormat parse_log_format(const std::string& name) {
  if (name == "text") return LogFormat::text;
  if (name == "json") return LogFormat::json;
  throw Error("unknown log format '" + name + "' (expected text or json)");
}

std::unique_ptr<spdlog::formatter> json_log_formatter() { return std::make_unique<JsonFormatter>(); }

void use_log_format(spdlog::logger& logger, LogFormat format) {
  if (format == LogFormat::json) logger.set_formatter(json_log_formatter());
}

}  // namespace fanout::ops
