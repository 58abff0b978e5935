// status_command.cpp
#include "status_command.hpp"

#include <algorithm>
#include <csignal>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <fanout/error.hpp>

#include "broker_queries.hpp"
#include "local_service.hpp"
#include "printable.hpp"
#include "system/private_directory.hpp"

namespace fanout::tool {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

struct Usage {
  std::string message;
};

// A place to ask: what to call it, and its endpoint.
struct Place {
  std::string name;
  std::string endpoint;
};

// The local pools of the running instances of `program`: the socket files pool-<pid>-... in this
// user's private runtime directory (local_pool.cpp) whose pid runs `program`.
std::vector<Place> local_pools_of(const std::filesystem::path& program) {
  std::vector<Place> pools;
  std::filesystem::path directory;
  try {
    directory = sys::private_runtime_directory();
  } catch (const std::runtime_error&) {
    return pools;  // no usable directory: no local pool of this user's can be running
  }
  std::error_code error;
  for (std::filesystem::directory_iterator entry(directory, error), end; !error && entry != end; entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (name.rfind("pool-", 0) != 0) continue;
    const std::string pid = name.substr(5, name.find('-', 5) - 5);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code unreadable;
    if (std::filesystem::read_symlink("/proc/" + pid + "/exe", unreadable) != program) continue;
    pools.push_back({"the local pool of " + program.string() + " (pid " + pid + ")", "ipc://" + entry->path().string()});
  }
  std::sort(pools.begin(), pools.end(), [](const Place& a, const Place& b) { return a.endpoint < b.endpoint; });
  return pools;
}

nlohmann::json as_json(const link::BrokerStatus& status, const std::string& place) {
  using nlohmann::json;
  const auto shown = [](const std::string& text) { return wire::printable(text, wire::kLogTextLimit); };
  json refused = json::object();
  for (const auto& [reason, count] : status.refused) refused[reason] = count;
  json workers = json::array();
  std::uint64_t executors = 0;
  for (const auto& worker : status.workers) {
    executors += worker.executors;
    json names = json::array();
    for (const auto& name : worker.task_names) names.push_back(shown(name));
    workers.push_back({{"id", shown(worker.id)},
                       {"host", shown(worker.host)},
                       {"version", worker.version.empty() ? json(nullptr) : json(shown(worker.version))},
                       {"executors", worker.executors},
                       {"busy", worker.busy},
                       {"running", worker.running},
                       {"credit", worker.credit},
                       {"free_credit", worker.free_slots},
                       {"restarts", worker.restarts},
                       {"last_seen_ms", worker.last_seen_ms},
                       {"task_names", std::move(names)}});
  }
  return {{"place", place},
          {"endpoint", status.endpoint},
          {"version", status.version.empty() ? json(nullptr) : json(shown(status.version))},
          {"queued", status.queued},
          {"running", status.running},
          {"clients", status.clients},
          {"workers", status.workers.size()},
          {"executors", executors},
          {"deferred",
           {{"pending", status.deferred_pending},
            {"running", status.deferred_running},
            {"done", status.deferred_done},
            {"dead", status.deferred_dead}}},
          {"refused_messages", status.dropped_messages},
          {"refused", std::move(refused)},
          {"worker_list", std::move(workers)}};
}

// One look at every place: printed; false when none answered.
bool show(zmq::context_t& context, const std::vector<Place>& places, const StatusOptions& options, std::ostream& out,
          std::ostream& err) {
  nlohmann::json documents = nlohmann::json::array();
  std::ostringstream text;
  bool any = false;
  for (const auto& place : places) {
    try {
      const auto status = link::query_status(context, place.endpoint, options.timeout);
      any = true;
      if (options.json) {
        documents.push_back(as_json(status, place.name));
      } else {
        if (places.size() > 1 || !options.program.empty()) text << place.name << ":\n";
        text << link::status_text(status);
      }
    } catch (const Error& error) {
      // The error names the endpoint already; the place's name adds to it only for a local pool.
      const std::string what = error.what();
      err << "fanout status: " << (what.find(place.endpoint) == std::string::npos ? place.name + ": " : "") << what << "\n";
    }
  }
  if (options.json) {
    // One object for one broker; with --program, an array (one per place that answered).
    const auto& document = options.program.empty() && documents.size() == 1 ? documents[0] : documents;
    if (any) out << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    out << text.str();
  }
  out.flush();
  return any;
}

std::vector<Place> places_of(const StatusOptions& options) {
  if (!options.broker.empty() && !options.program.empty()) {
    throw Usage{"--broker and --program name two different places: give one"};
  }
  if (!options.program.empty()) {
    // Keyed by the path /proc/self/exe reads in the program: absolute, symlinks resolved.
    std::error_code error;
    const auto program = std::filesystem::canonical(options.program, error);
    if (error || !std::filesystem::is_regular_file(program)) {
      throw Usage{"--program " + options.program + ": no such program" + (error ? " (" + error.message() + ")" : "")};
    }
    std::vector<Place> places = local_pools_of(program);
    places.insert(places.begin(), {"the local service of " + program.string(),
                                   detail::local_service_endpoint_for(program.string())});
    return places;
  }
  std::string broker = options.broker;
  if (broker.empty()) {
    const char* variable = std::getenv("FANOUT_BROKER");
    if (variable == nullptr || *variable == '\0') {
      throw Usage{"no broker: give --broker ADDR (or set FANOUT_BROKER), or --program PATH for a program in local mode"};
    }
    broker = variable;
  }
  return {{"the broker at " + broker, broker}};
}

}  // namespace

CLI::App* add_status_command(CLI::App& app, StatusOptions& options) {
  auto* status = app.add_subcommand("status", "Workers, executors and their credit, queue, refusals, versions");
  status->add_option("--broker", options.broker, "Broker endpoint (default: FANOUT_BROKER)");
  status->add_option("--program", options.program,
                     "Local mode: the program whose local service and running pools to look at");
  status->add_flag("--json", options.json, "JSON instead of text (fields: docs/operations.md)");
  status->add_option("--watch", options.watch_seconds, "Ask again every N seconds until Ctrl-C")
      ->check(CLI::Range(0.1, 86400.0));
  status->add_option_function<int>(
            "--timeout-ms", [&options](int ms) { options.timeout = std::chrono::milliseconds(ms); },
            "How long to wait for an answer")
      ->check(CLI::Range(1, 600000));
  status->footer(
      "Examples:\n"
      "  fanout status --broker tcp://127.0.0.1:5555\n"
      "  FANOUT_BROKER=tcp://127.0.0.1:5555 fanout status --json | jq '.worker_list[].id'\n"
      "  fanout status --watch 2\n"
      "  fanout status --program ./build/my_app      # a program in local mode\n"
      "\n"
      "Exit codes: 0 answered, 2 bad usage, 4 nothing answered.");
  return status;
}

int run_status(const StatusOptions& options, std::ostream& out, std::ostream& err) {
  std::vector<Place> places;
  try {
    places = places_of(options);
  } catch (const Usage& usage) {
    err << "fanout status: " << usage.message << "\nRun with --help for more information.\n";
    return kStatusExitUsage;
  }
  zmq::context_t context;
  if (options.watch_seconds <= 0) return show(context, places, options, out, err) ? kStatusExitOk : kStatusExitNoBroker;

  // --watch: until Ctrl-C (or SIGTERM), which ends it cleanly with status 0.
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const auto period = std::chrono::duration<double>(options.watch_seconds);
  while (g_stop == 0) {
    const auto next = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
    if (!options.json) {
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
      out << "--- " << stamp << "\n";
    }
    // A program's running instances come and go: look for them each time.
    if (!options.program.empty()) {
      try {
        places = places_of(options);
      } catch (const Usage&) {
        // The program was removed meanwhile: keep asking where it ran.
      }
    }
    show(context, places, options, out, err);
    while (g_stop == 0 && std::chrono::steady_clock::now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return kStatusExitOk;
}

}  // namespace fanout::tool
