// deferred_command.cpp
#include "deferred_command.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <fanout/error.hpp>
#include <fanout/task_error.hpp>

#include "local_service.hpp"
#include "broker_queries.hpp"
#include "printable.hpp"
#include "keys.hpp"
#include "transport.hpp"

namespace fanout::tool {

const char* const kDeferredFooter =
    "A deferred task that fails on every attempt (fanout-broker --deferred-attempts, 3 by default)\n"
    "is kept as dead, with its error, by the broker's journal. `list` shows them; `retry` puts them\n"
    "back in the queue with a fresh budget of attempts; `drop` forgets them for good. --receipt (the\n"
    "id defer() returned) limits any of them to one batch, --index to one task of it.\n"
    "\n"
    "Where: --broker ADDR (or FANOUT_BROKER), which must run with --journal. In local mode (no\n"
    "FANOUT_BROKER) a program's deferred tasks are kept by that program's local service: name the\n"
    "program with --program PATH (the executable, as built; symlinks are resolved). Its service is\n"
    "started when it is not running (it stops itself again once idle), so a retried task runs.\n"
    "\n"
    "Examples:\n"
    "  fanout deferred list --broker tcp://127.0.0.1:5555\n"
    "  FANOUT_BROKER=tcp://10.0.0.5:5555 fanout deferred list --receipt 17 --json | jq '.dead[].message'\n"
    "  fanout deferred retry --receipt 17 --index 3\n"
    "  fanout deferred drop --all --program ./build/my_app\n"
    "\n"
    "Exit codes: 0 done (a list, even an empty one; at least one task retried or dropped); 1 retry or\n"
    "drop matched no dead task; 2 bad usage; 3 the broker cannot serve it (it keeps no journal, the\n"
    "receipt is unknown, the program never deferred a batch); 4 no broker answered.";

namespace {

// A usage mistake found after parsing (CLI11 finds the rest).
struct Usage {
  std::string message;
};

struct DeadRow {
  std::string receipt;
  std::uint32_t index = 0;
  std::string name;
  std::optional<std::string> key;
  std::uint32_t attempts = 0;
  std::string kind;
  std::string message;
  std::string arguments;  // as text, decoded by the broker (empty from an older broker)
};

struct Answer {
  std::vector<DeadRow> dead;
  std::uint32_t affected = 0;
  std::string error;
};

std::string kind_name(wire::ErrorKind kind) {
  const auto value = static_cast<unsigned>(kind);
  if (value > static_cast<unsigned>(ErrorKind::bad_message)) return "unknown (" + std::to_string(value) + ")";
  return std::string(to_string(static_cast<ErrorKind>(value)));
}

// Sends one DeferredRequest to `endpoint` and waits for the report; nullopt at the deadline.
std::optional<Answer> ask(zmq::context_t& context, const std::string& endpoint, const DeferredOptions& options) {
  wire::OutMessage out;
  auto request = out.envelope().initDeferredRequest();
  switch (options.action) {
    case DeferredAction::list: request.setAction(wire::DeferredRequest::Action::LIST); break;
    case DeferredAction::retry: request.setAction(wire::DeferredRequest::Action::RETRY); break;
    case DeferredAction::drop: request.setAction(wire::DeferredRequest::Action::DROP); break;
  }
  request.setReceipt(options.receipt);
  if (options.index) {
    request.setIndex(*options.index);
    request.setHasIndex(true);
  }
  const auto message =
      link::ask_broker(context, endpoint, out.frame(), wire::Envelope::DEFERRED_REPORT, options.timeout);
  if (!message) return std::nullopt;
  const auto envelope = message->envelope();
  if (envelope.isError()) throw Error("the broker at " + endpoint + " refused the request: " + envelope.getError().getMessage().cStr());
  const auto report = envelope.getDeferredReport();
  Answer answer;
  answer.error = report.getError().cStr();
  answer.affected = report.getAffected();
  for (const auto dead : report.getDead()) {
    DeadRow row;
    row.receipt = dead.getReceipt().cStr();
    row.index = dead.getIndex();
    row.name = dead.getName().cStr();
    if (dead.getKey().size() > 0) row.key = dead.getKey().cStr();
    row.attempts = dead.getAttempts();
    row.kind = kind_name(dead.getKind());
    row.message = dead.getMessage().cStr();
    row.arguments = dead.getArguments().cStr();
    answer.dead.push_back(std::move(row));
  }
  return answer;
}

// One line per cell, and nothing a terminal would act on: messages and keys come from tasks and
// workers, so newlines, escape sequences and the like are shown escaped (printable.hpp).
std::string one_line(std::string_view text) { return wire::printable(text); }

void print_table(const std::vector<DeadRow>& rows, std::ostream& out) {
  const std::vector<std::string> header{"RECEIPT", "INDEX", "TASK", "KEY", "ARGUMENTS", "ATTEMPTS", "ERROR", "MESSAGE"};
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows) {
    cells.push_back({row.receipt, std::to_string(row.index), one_line(row.name), row.key ? one_line(*row.key) : "-",
                     row.arguments.empty() ? "-" : one_line(row.arguments), std::to_string(row.attempts), row.kind,
                     one_line(row.message)});
  }
  std::vector<std::size_t> width(header.size());
  for (std::size_t column = 0; column < header.size(); ++column) {
    width[column] = header[column].size();
    for (const auto& line : cells) width[column] = std::max(width[column], line[column].size());
  }
  const auto print = [&](const std::vector<std::string>& line) {
    for (std::size_t column = 0; column < line.size(); ++column) {
      out << line[column];
      if (column + 1 < line.size()) out << std::string(width[column] - line[column].size() + 2, ' ');
    }
    out << '\n';
  };
  print(header);
  for (const auto& line : cells) print(line);
}

void print_json(const DeferredOptions& options, const Answer& answer, std::ostream& out) {
  nlohmann::json document;
  if (options.action == DeferredAction::list) {
    document["dead"] = nlohmann::json::array();
    for (const auto& row : answer.dead) {
      std::string kind = row.kind;
      std::replace(kind.begin(), kind.end(), ' ', '_');
      document["dead"].push_back({{"receipt", row.receipt},
                                  {"index", row.index},
                                  {"task", row.name},
                                  {"key", row.key ? nlohmann::json(*row.key) : nlohmann::json(nullptr)},
                                  {"arguments", row.arguments},
                                  {"attempts", row.attempts},
                                  {"error_kind", kind},
                                  {"message", row.message}});
    }
  } else {
    document["action"] = options.action == DeferredAction::retry ? "retry" : "drop";
    document["affected"] = answer.affected;
  }
  // Messages are whatever tasks threw: replace bytes that are not UTF-8 rather than fail.
  out << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void check_usage(const DeferredOptions& options) {
  if (!options.broker.empty() && !options.program.empty()) {
    throw Usage{"--broker and --program name two different places: give one"};
  }
  if (options.index && options.receipt.empty()) throw Usage{"--index needs --receipt (an index is a task of one batch)"};
  if (options.action != DeferredAction::list) {
    if (options.all == !options.receipt.empty()) {
      throw Usage{"say which dead tasks: --all, or --receipt R [--index I]"};
    }
  }
}

}  // namespace

int run_deferred(const DeferredOptions& given, std::ostream& out, std::ostream& err) {
  const std::string name = given.action == DeferredAction::list    ? "fanout deferred list"
                           : given.action == DeferredAction::retry ? "fanout deferred retry"
                                                                   : "fanout deferred drop";
  DeferredOptions options = given;
  if (!use_key_options(options.keys, name, err)) return kDeferredExitUsage;
  std::string where;
  try {
    check_usage(options);
    if (options.program.empty() && options.broker.empty()) {
      const char* variable = std::getenv("FANOUT_BROKER");
      if (variable == nullptr || *variable == '\0') {
        throw Usage{"no broker: give --broker ADDR (or set FANOUT_BROKER), or --program PATH for a program's local service"};
      }
      options.broker = variable;
    }
  } catch (const Usage& usage) {
    err << name << ": " << usage.message << "\nRun with --help for more information.\n";
    return kDeferredExitUsage;
  }

  zmq::context_t context;
  std::string endpoint = options.broker;
  std::string program_path;  // with --program: the program, as its service is keyed
  where = "the broker at " + options.broker;
  if (!options.program.empty()) {
    // The service is keyed by the path /proc/self/exe reads in the program: absolute, symlinks resolved.
    std::error_code error;
    const auto program = std::filesystem::canonical(options.program, error);
    if (error || !std::filesystem::is_regular_file(program)) {
      err << name << ": --program " << options.program << ": no such program" << (error ? " (" + error.message() + ")" : "")
          << "\nRun with --help for more information.\n";
      return kDeferredExitUsage;
    }
    program_path = program.string();
    where = program_path + "'s local service";
    endpoint = detail::local_service_endpoint_for(program.string());
    try {
      if (!link::query_counts(context, endpoint, std::min(options.timeout, std::chrono::milliseconds(500)))) {
        // Not running: start it only when it has a journal to serve (the program has deferred before).
        const auto journal = detail::local_service_directory_for(program.string()) / "journal";
        if (!std::filesystem::exists(journal)) {
          err << name << ": " << program.string() << " has no deferred tasks here: its local service keeps no journal at "
              << journal.string() << " (it never deferred a batch as this user, with this XDG_STATE_HOME)\n";
          return kDeferredExitRefused;
        }
        endpoint = detail::ensure_local_service_for(program.string(), {program.string()});
      }
    } catch (const std::exception& failure) {
      err << name << ": " << failure.what() << "\n";
      return kDeferredExitNoBroker;
    }
  }

  std::optional<Answer> answer;
  try {
    answer = ask(context, endpoint, options);
  } catch (const std::exception& failure) {
    err << name << ": " << failure.what() << "\n";
    return kDeferredExitRefused;
  }
  if (!answer && !program_path.empty()) {
    // A local service stops by itself once idle: it can answer the probe above and stop before
    // the question. Start it again and ask once more (a question it never answered it never
    // acted on; and if it did, dropping or retrying what is gone finds nothing the second time).
    try {
      endpoint = detail::ensure_local_service_for(program_path, {program_path});
      answer = ask(context, endpoint, options);
    } catch (const std::exception& failure) {
      err << name << ": " << failure.what() << "\n";
      return kDeferredExitNoBroker;
    }
  }
  if (!answer) {
    err << name << ": no answer from " << where << " (" << endpoint << ") within " << options.timeout.count() << " ms; " << wire::no_answer_hint(endpoint) << "\n";
    return kDeferredExitNoBroker;
  }
  if (!answer->error.empty()) {
    err << name << ": " << where << ": " << answer->error << "\n";
    return kDeferredExitRefused;
  }

  if (options.json) {
    print_json(options, *answer, out);
  } else if (options.action == DeferredAction::list) {
    if (answer->dead.empty()) {
      out << "no dead deferred tasks" << (options.receipt.empty() ? "" : " in batch " + options.receipt) << "\n";
    } else {
      print_table(answer->dead, out);
    }
  } else if (answer->affected > 0) {
    out << answer->affected << " dead task(s) "
        << (options.action == DeferredAction::retry ? "back in the queue, with a fresh budget of attempts" : "dropped")
        << "\n";
  }
  if (options.action != DeferredAction::list && answer->affected == 0) {
    err << name << ": no dead task matched" << (options.receipt.empty() ? "" : " in batch " + options.receipt)
        << (options.index ? " at index " + std::to_string(*options.index) : "") << "\n";
    return kDeferredExitNothing;
  }
  return kDeferredExitOk;
}

CLI::App* add_deferred_command(CLI::App& app, DeferredOptions& options) {
  auto* deferred = app.add_subcommand("deferred", "The dead deferred tasks of a broker: list, retry or drop them");
  deferred->require_subcommand(1);
  deferred->footer(kDeferredFooter);
  const auto common = [&options](CLI::App* command) {
    command->add_option("--broker", options.broker, "Broker endpoint (env FANOUT_BROKER)");
    command->add_option("--program", options.program, "Local mode: the program whose local service keeps the tasks");
    command->add_option("--receipt", options.receipt, "Only the batch with this receipt (what defer() returned)");
    command->add_option_function<std::uint32_t>(
        "--index", [&options](const std::uint32_t& index) { options.index = index; },
        "Only this task of the batch (needs --receipt)");
    command->add_option_function<int>(
                "--timeout-ms", [&options](const int& ms) { options.timeout = std::chrono::milliseconds(ms); },
                "How long to wait for an answer (default 3000)")
        ->check(CLI::Range(1, 600000));
    command->add_flag("--json", options.json, "Print JSON instead of a table");
    add_key_options(*command, options.keys);
    command->footer(kDeferredFooter);
  };
  auto* list = deferred->add_subcommand("list", "The dead tasks with their errors and attempts");
  common(list);
  list->callback([&options] { options.action = DeferredAction::list; });
  auto* retry = deferred->add_subcommand("retry", "Dead tasks back in the queue, with a fresh budget of attempts");
  common(retry);
  retry->add_flag("--all", options.all, "Every dead task");
  retry->callback([&options] { options.action = DeferredAction::retry; });
  auto* drop = deferred->add_subcommand("drop", "Dead tasks forgotten for good");
  common(drop);
  drop->add_flag("--all", options.all, "Every dead task");
  drop->callback([&options] { options.action = DeferredAction::drop; });
  return deferred;
}

}  // namespace fanout::tool
