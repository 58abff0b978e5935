// The broker's status page (`/` of fanout-broker --metrics) and its figures (/status.json), as an
// operator sees them: a real broker with two real workers (one with a hostile id) and a real batch
// of shell commands running (`fanout run --broker`), the JSON read over HTTP, and the page rendered
// by headless Chromium, whose DOM must show what the JSON says (so the page's JavaScript ran
// against live data) and whose screenshot is kept under the build directory.
//
// Where Chromium is missing or cannot start, the browser case says why and the program exits 77
// (ctest's SKIP_RETURN_CODE) after the rest has run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "scrape.hpp"

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// What the browser case could not do, when it had to skip: the program then exits 77.
std::optional<std::string> g_skipped;

// A worker id that is markup, and would run script if the page wrote it as HTML.
const std::string kHostileId = R"(<img src=x onerror="document.title='owned'">worker-b)";
const std::string kShell = "fanout.shell";
constexpr int kRunning = 2;  // two workers of one executor each
constexpr int kQueued = 4;

fanout_test::WorkerOptions shell_worker(const std::string& id) {
  return {.processes = 1, .allow_shell = true, .arguments = {"--id", id}, .name = "worker " + id};
}

// A broker serving its endpoint, two workers, and one client batch of six 30 s shell commands:
// two run, four wait. Everything is killed with the scope (the client first).
struct Watched {
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{
      .broker_arguments = {"--metrics", "127.0.0.1:0", "--heartbeat-ms", "100"},
      .workers = {shell_worker("worker-a"), shell_worker(kHostileId)}}};
  std::string url;
  std::unique_ptr<fanout_test::Child> client;

  Watched() {
    const auto found = cluster.broker().process().wait_for_line("metrics ", fanout_test::kPatience);
    REQUIRE_MESSAGE(found.has_value(), cluster.logs());
    url = *found;
    client = std::make_unique<fanout_test::Child>(
        std::vector<std::string>{FANOUT_TOOL_PROGRAM, "run", "--broker", cluster.endpoint(), "-j", "6",
                                 "sleep 30; echo {}", ":::", "1", "2", "3", "4", "5", "6"},
        fanout_test::ChildOptions{.drop_env = {"FANOUT_"}, .merge_output = true});
    REQUIRE_MESSAGE(cluster.wait_for([](const fanout_test::StatusCounts& counts) {
                      return counts.running == kRunning && counts.queued == kQueued;
                    }),
                    (cluster.logs() + "\nfanout run: " + client->out()));
  }

  // /status.json once its snapshot shows the batch (the broker publishes every heartbeat).
  json status() {
    json figures;
    const bool shown = fanout_test::eventually([&] {
      const auto answer = fanout_test::http_get(url, "/status.json");
      if (!answer || answer->status != 200) return false;
      figures = json::parse(answer->body);
      return figures["summary"]["running"] == kRunning && figures["summary"]["queued"] == kQueued;
    });
    REQUIRE_MESSAGE(shown, cluster.logs());
    return figures;
  }
};

std::string chromium_program() {
  if (const char* given = std::getenv("FANOUT_TEST_CHROMIUM")) return given;
  return "/usr/bin/chromium";
}

// Headless Chromium on `url` with `mode` (--dump-dom, --screenshot=FILE): what it wrote. The
// flags keep it off the network beyond `url` (PLATFORM.md); the virtual time budget lets the page
// fetch and render (virtual time stands still while a fetch is pending).
fanout_test::Finished chromium(const std::string& url, const std::string& mode) {
  fanout_test::TempDir profile;
  return fanout_test::run_to_end({chromium_program(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                  "--disable-dev-shm-usage", "--user-data-dir=" + profile.path().string(),
                                  "--window-size=412,1400", "--virtual-time-budget=4000", mode, url},
                                 {}, 40s);
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t found = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++found;
  return found;
}

}  // namespace

TEST_CASE("/status.json shows the workers, the queue by task name and the running batch") {
  Watched watched;
  const json status = watched.status();
  CHECK(status["version"] == FANOUT_VERSION_TEXT);
  CHECK(status["summary"]["workers"] == 2);
  CHECK(status["summary"]["executors"] == 2);

  REQUIRE(status["workers"].size() == 2);
  // Sorted by id: '<' sorts before 'w'. The hostile id is kept as text, only JSON-escaped.
  CHECK(status["workers"][0]["id"] == kHostileId);
  CHECK(status["workers"][1]["id"] == "worker-a");
  for (const auto& worker : status["workers"]) {
    CHECK(worker["executors"] == 1);
    CHECK(worker["busy"] == 1);
    CHECK(worker["running"] == 1);
    CHECK(worker["restarts"] == 0);
    CHECK(worker["version"] == FANOUT_VERSION_TEXT);  // during a rolling upgrade, who runs what
    CHECK(worker["allow_shell"] == true);
    CHECK(worker["task_names"] == json::array({kShell}));
  }

  REQUIRE(status["queue"].size() == 1);
  CHECK(status["queue"][0]["task"] == kShell);
  CHECK(status["queue"][0]["queued"] == kQueued);

  REQUIRE(status["batches"].size() == 1);
  const json& batch = status["batches"][0];
  CHECK(batch["deferred"] == false);
  CHECK(batch["total"].is_null());  // `fanout run` reads its input as it goes: open-ended
  CHECK(batch["received"] == 6);
  CHECK(batch["settled"] == 0);
  CHECK(batch["running"] == kRunning);
  CHECK(batch["queued"] == kQueued);
  CHECK(batch["age_seconds"].get<double>() >= 0);
  CHECK(batch["client"].get<std::string>().size() >= 2);

  CHECK(status["deferred"]["dead"] == 0);
  CHECK(status["deferred"]["dead_tasks"].empty());
  CHECK(status["refused"].contains("bad_message"));
  CHECK(status["recent"].is_array());
}

TEST_CASE("the status page renders the live workers, queue and batch in a headless browser") {
  Watched watched;
  const json status = watched.status();

  // The page itself: one document, nothing fetched from elsewhere.
  const auto page = fanout_test::http_get(watched.url, "/");
  REQUIRE(page.has_value());
  CHECK(page->status == 200);
  CHECK(page->body.find("name=\"viewport\"") != std::string::npos);
  CHECK(page->body.find("src=\"http") == std::string::npos);
  CHECK(page->body.find("href=\"http") == std::string::npos);

  if (access(chromium_program().c_str(), X_OK) != 0) {
    g_skipped = chromium_program() + " is not installed (Debian package chromium; scripts/install-deps.sh)";
    MESSAGE("SKIPPED: " << *g_skipped);
    return;
  }
  fanout_test::Finished dump = chromium(watched.url + "/", "--dump-dom");
  if (dump.status != 0 && dump.out.empty()) {
    g_skipped = "headless Chromium could not start (status " + std::to_string(dump.status) + "): " + dump.err;
    MESSAGE("SKIPPED: " << *g_skipped);
    return;
  }
  INFO("DOM:\n" << dump.out << "\nChromium's stderr:\n" << dump.err);
  // The script ran and rendered a fetched status.json...
  CHECK(dump.out.find("data-state=\"live\"") != std::string::npos);
  // ...with both workers, the queue of shell commands and the batch with its progress.
  CHECK(count(dump.out, "<tr class=\"worker\">") == 2);
  CHECK(dump.out.find("worker-a") != std::string::npos);
  CHECK(dump.out.find("serves fanout.shell") != std::string::npos);
  CHECK(count(dump.out, std::string("version ") + FANOUT_VERSION_TEXT) == 3);  // the broker's, each worker's
  CHECK(count(dump.out, "<tr class=\"queued\">") == 1);
  CHECK(dump.out.find("<td class=\"text\">fanout.shell</td><td class=\"num\">4</td>") != std::string::npos);
  CHECK(count(dump.out, "<tr class=\"batch\"") == 1);
  CHECK(dump.out.find(status["batches"][0]["id"].get<std::string>().substr(8)) != std::string::npos);
  CHECK(dump.out.find("<td class=\"num\">0 / open</td>") != std::string::npos);
  // The attacker's worker id is shown as text: escaped in the DOM, no element made of it, no
  // script run (the title is the page's own).
  CHECK(dump.out.find("&lt;img src=x onerror=\"document.title='owned'\"&gt;worker-b") != std::string::npos);
  CHECK(dump.out.find("<img") == std::string::npos);
  CHECK(dump.out.find("<title>fanout broker</title>") != std::string::npos);

  // A phone-sized screenshot, kept as the test's artifact (and the README's picture).
  std::filesystem::create_directories(FANOUT_ARTIFACT_DIR);
  const std::filesystem::path picture = std::filesystem::path(FANOUT_ARTIFACT_DIR) / "status_page.png";
  std::filesystem::remove(picture);
  const fanout_test::Finished shot = chromium(watched.url + "/", "--screenshot=" + picture.string());
  INFO("Chromium's stderr:\n" << shot.err);
  CHECK(shot.status == 0);
  CHECK(std::filesystem::exists(picture));
  CHECK((std::filesystem::exists(picture) && std::filesystem::file_size(picture) > 10000));
  MESSAGE("screenshot: " << picture.string());
}

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  if (failed != 0 || context.shouldExit()) return failed;
  if (g_skipped) {
    std::cerr << "ops_status_page_test: SKIPPED the browser case: " << *g_skipped << "\n";
    return 77;
  }
  return 0;
}
