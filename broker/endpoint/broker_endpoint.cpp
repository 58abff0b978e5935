#include "broker_endpoint.hpp"

#include "ops/metrics_text.hpp"
#include "status_json.hpp"
#include "status_page.hpp"

namespace fanout::broker {

namespace {

std::string milliseconds(std::chrono::steady_clock::duration duration) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) + " ms";
}

}  // namespace

BrokerEndpoint::BrokerEndpoint(const ops::HttpAddress& address, std::chrono::milliseconds stall_limit)
    : stall_limit_(stall_limit),
      http_(address, ops::HttpHandlers{[this] { return metrics(); },
                                       [this] { return health(); },
                                       [this] { return ready(); },
                                       {{"/", "text/html; charset=utf-8", [] { return std::string(status_page_html()); }},
                                        {"/status.json", "application/json", [this] { return status(); }}}}) {}

ops::Probe BrokerEndpoint::health() const {
  const Broker* broker = broker_.load(std::memory_order_acquire);
  if (broker == nullptr) return {true, served_ ? "stopping" : "starting"};
  const auto since = broker->since_loop_turned();
  if (!since) return {true, "starting"};
  if (*since > stall_limit_) return {false, "the broker's loop has not turned for " + milliseconds(*since)};
  return {true, "ok"};
}

ops::Probe BrokerEndpoint::ready() const {
  const Broker* broker = broker_.load(std::memory_order_acquire);
  if (broker == nullptr) return {false, served_ ? "stopping" : "starting: binding, reading the journal"};
  if (!broker->ready()) return {false, "starting"};
  return {true, "ready"};
}

std::string BrokerEndpoint::metrics() const {
  const Broker* broker = broker_.load(std::memory_order_acquire);
  // Before the broker exists, the build and nothing else: a scrape still succeeds.
  return metrics_text(broker != nullptr ? *broker->metrics() : MetricsSnapshot{});
}

std::string BrokerEndpoint::status() const {
  const Broker* broker = broker_.load(std::memory_order_acquire);
  return status_json(broker != nullptr ? *broker->metrics() : MetricsSnapshot{});
}

std::string metrics_text(const MetricsSnapshot& s) {
  ops::MetricsText text;
  for (const auto& [task, count] : s.queued_by_task) {
    text.gauge("fanout_broker_tasks_queued", "Tasks waiting at the broker, by task name", static_cast<double>(count),
               {{"task", task}});
  }
  text.gauge("fanout_broker_tasks_running", "Tasks at executors", static_cast<double>(s.running));
  text.gauge("fanout_broker_executors", "Executors connected", static_cast<double>(s.executors));
  text.gauge("fanout_broker_workers", "Workers (supervisors) connected", static_cast<double>(s.workers));
  text.gauge("fanout_broker_clients", "Clients the broker holds batches or a session for",
             static_cast<double>(s.clients));
  text.gauge("fanout_broker_batches", "Batches held, deferred ones included", static_cast<double>(s.batches));
  const char* deferred_help = "Deferred tasks in the journal, by state";
  text.gauge("fanout_broker_deferred_tasks", deferred_help, static_cast<double>(s.deferred_pending), {{"state", "pending"}});
  text.gauge("fanout_broker_deferred_tasks", deferred_help, static_cast<double>(s.deferred_running), {{"state", "running"}});
  text.gauge("fanout_broker_deferred_tasks", deferred_help, static_cast<double>(s.deferred_dead), {{"state", "dead"}});
  text.counter("fanout_broker_deferred_tasks_done_total", "Deferred tasks finished since start",
               static_cast<double>(s.deferred_done));
  for (const auto& [outcome, count] : s.completed) {
    text.counter("fanout_broker_tasks_completed_total",
                 "Task slots settled, by outcome (success, or the kind of failure; a unit of quick slots counts each); deferred tasks once, at the end",
                 static_cast<double>(count), {{"outcome", outcome}});
  }
  for (const auto& [reason, count] : s.refused) {
    text.counter("fanout_broker_messages_refused_total", "Messages the broker refused or dropped, by reason",
                 static_cast<double>(count), {{"reason", reason}});
  }
  text.counter("fanout_broker_tasks_received_total", "Task slots received from clients (a unit of quick slots counts each)", static_cast<double>(s.tasks_received));
  text.counter("fanout_broker_tasks_requeued_total", "Tasks queued again after their executor was lost",
               static_cast<double>(s.requeued_tasks));
  text.counter("fanout_broker_duplicate_results_total", "Results dropped: their slot was no longer in flight",
               static_cast<double>(s.duplicate_results));
  text.counter("fanout_broker_executors_lost_total", "Executors lost (died, stopped, or their worker went)",
               static_cast<double>(s.executors_lost));
  text.histogram("fanout_broker_task_duration_seconds", "Run time of tasks at executors", s.task_seconds);
  text.histogram("fanout_broker_task_queue_wait_seconds", "Time tasks waited at the broker before their first dispatch",
                 s.queue_wait_seconds);
  if (s.journal_fsync_seconds) {
    text.histogram("fanout_broker_journal_fsync_seconds", "Time each fdatasync of the journal took",
                   *s.journal_fsync_seconds);
  }
  return text.text();
}

}  // namespace fanout::broker
