#include "status_page.hpp"

namespace fanout::broker {

namespace {

// The raw string's delimiter is `page`: the text below never contains `)page"`.
constexpr std::string_view kPage = R"page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fanout broker</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f7f8fa; --card: #fff;
          --ok: #12805c; --warn: #b54708; --bad: #b42318; --bar: #3b6fd8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem;
           padding: .75rem 1rem; background: var(--fg); color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header .meta { font-size: .85rem; opacity: .8; }
  #state { margin-left: auto; font-size: .85rem; }
  body[data-state="stale"] #state { color: #fda29b; }
  main { max-width: 1100px; margin: 0 auto; padding: .75rem; display: grid; gap: .75rem; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem; min-width: 0; }
  h2 { font-size: 1rem; margin: 0 0 .5rem; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(6rem, 1fr)); gap: .5rem; }
  .tile { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; }
  .tile b { display: block; font-size: 1.3rem; }
  .tile span { color: var(--muted); font-size: .8rem; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: .8rem; white-space: nowrap; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.text { overflow-wrap: anywhere; min-width: 9rem; }
  td.id { white-space: nowrap; font-family: ui-monospace, monospace; font-size: .8rem; }
  .names { color: var(--muted); font-size: .8rem; overflow-wrap: anywhere; }
  .empty { color: var(--muted); font-style: italic; }
  .progress { height: .5rem; background: var(--line); border-radius: 4px; overflow: hidden; min-width: 4rem; }
  .progress > div { height: 100%; background: var(--bar); }
  .bad { color: var(--bad); } .warn { color: var(--warn); } .ok { color: var(--ok); }
  #chart { display: flex; align-items: flex-end; gap: 2px; height: 4rem; margin: .25rem 0 .5rem;
           border-bottom: 1px solid var(--line); }
  #chart div { flex: 1; background: var(--bar); min-height: 1px; border-radius: 2px 2px 0 0; }
  .two { display: grid; gap: .75rem; grid-template-columns: 1fr; }
  @media (min-width: 760px) { .two { grid-template-columns: 1fr 1fr; } }
  @media (max-width: 520px) { .wide { display: none; } body { font-size: 14px; } }
</style>
</head>
<body data-state="loading">
<header>
  <h1>fanout broker</h1>
  <span class="meta" id="version"></span>
  <span class="meta" id="uptime"></span>
  <span id="state">loading…</span>
</header>
<main>
  <section id="summary"><div class="tiles" id="tiles"></div></section>
  <section id="workers">
    <h2>Workers</h2>
    <div class="scroll"><table>
      <thead><tr><th>worker</th><th class="num">busy</th><th class="num">tasks / credit</th>
        <th class="num">restarts</th><th class="num wide">seen</th></tr></thead>
      <tbody id="worker-rows"></tbody>
    </table></div>
  </section>
  <div class="two">
    <section id="queue">
      <h2>Queue by task</h2>
      <div class="scroll"><table>
        <thead><tr><th>task</th><th class="num">queued</th></tr></thead>
        <tbody id="queue-rows"></tbody>
      </table></div>
    </section>
    <section id="throughput">
      <h2>Throughput and latency, last minutes</h2>
      <div id="chart" aria-label="tasks per second, oldest first"></div>
      <div class="scroll"><table>
        <thead><tr><th>until</th><th class="num">tasks</th><th class="num">tasks/s</th><th class="num">mean run</th></tr></thead>
        <tbody id="recent-rows"></tbody>
      </table></div>
    </section>
  </div>
  <section id="batches">
    <h2>Running batches <span class="names" id="batches-note"></span></h2>
    <div class="scroll"><table>
      <thead><tr><th>batch</th><th class="wide">client</th><th>progress</th><th class="num">settled / total</th>
        <th class="num wide">queued</th><th class="num wide">running</th><th class="num">failed</th><th class="num">age</th></tr></thead>
      <tbody id="batch-rows"></tbody>
    </table></div>
  </section>
  <section id="deferred">
    <h2>Deferred tasks</h2>
    <div class="tiles" id="deferred-tiles"></div>
    <h2 style="margin-top:.75rem">Dead <span class="names" id="dead-note"></span></h2>
    <div class="scroll"><table>
      <thead><tr><th>receipt</th><th class="num">task</th><th class="num">attempts</th><th>last error</th></tr></thead>
      <tbody id="dead-rows"></tbody>
    </table></div>
  </section>
  <section id="counters">
    <h2>Since start</h2>
    <div class="two">
      <div class="scroll"><table><thead><tr><th>outcome</th><th class="num">slots</th></tr></thead>
        <tbody id="completed-rows"></tbody></table></div>
      <div class="scroll"><table><thead><tr><th>refused, by reason</th><th class="num">messages</th></tr></thead>
        <tbody id="refused-rows"></tbody></table></div>
    </div>
  </section>
</main>
<script>
"use strict";
// Every value enters the document as text (textContent), never as markup: worker ids, task names
// and errors come from peers.
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell);
  return tr;
}
function num(value) { return el("td", value, "num"); }
function fill(id, rows, columns, emptyText) {
  const body = document.getElementById(id);
  body.replaceChildren();
  if (rows.length === 0) {
    const td = el("td", emptyText, "empty");
    td.colSpan = columns;
    body.appendChild(row([td]));
    return;
  }
  for (const r of rows) body.appendChild(r);
}
function duration(seconds) {
  if (seconds < 1) return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 0) + " ms";
  if (seconds < 120) return seconds.toFixed(1) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}
function tiles(id, entries) {
  const box = document.getElementById(id);
  box.replaceChildren();
  for (const [label, value, cls] of entries) {
    const tile = el("div", undefined, "tile");
    tile.appendChild(el("b", value, cls));
    tile.appendChild(el("span", label));
    box.appendChild(tile);
  }
}

function render(s) {
  document.getElementById("version").textContent = "version " + s.version;
  document.getElementById("uptime").textContent = "up " + duration(s.uptime_seconds);
  const sum = s.summary;
  tiles("tiles", [["workers", sum.workers], ["executors", sum.executors], ["running", sum.running],
                  ["queued", sum.queued], ["batches", sum.batches], ["clients", sum.clients]]);

  fill("worker-rows", s.workers.map(w => {
    const who = el("td", undefined, "text");
    who.appendChild(el("div", w.id));
    const about = [w.host, "pid " + w.pid, "version " + (w.version === null ? "unknown" : w.version)].concat(w.draining ? ["draining"] : [], w.allow_shell ? ["shell"] : []);
    who.appendChild(el("div", about.join(" · "), "names"));
    who.appendChild(el("div", "serves " + (w.task_names.length ? w.task_names.join(", ") : "nothing"), "names"));
    const tr = row([who, num(w.busy + " of " + w.executors), num(w.running + " / " + w.credit),
                    el("td", w.restarts, "num" + (w.restarts > 0 ? " warn" : "")), el("td", w.last_seen_ms + " ms ago", "num wide")]);
    tr.className = "worker";
    return tr;
  }), 5, "no worker connected");

  fill("queue-rows", s.queue.map(q => {
    const tr = row([el("td", q.task, "text"), num(q.queued)]);
    tr.className = "queued";
    return tr;
  }), 2, "nothing queued");

  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const peak = Math.max(1e-9, ...s.recent.map(r => r.tasks_per_second));
  for (const r of s.recent) {
    const bar = el("div");
    bar.style.height = Math.round(100 * r.tasks_per_second / peak) + "%";
    bar.title = r.tasks_per_second.toFixed(2) + " tasks/s";
    chart.appendChild(bar);
  }
  fill("recent-rows", s.recent.slice(-6).reverse().map(r =>
    row([el("td", r.ago_seconds < 0.5 ? "now" : duration(r.ago_seconds) + " ago"), num(r.completed),
         num(r.tasks_per_second.toFixed(1)), num(r.mean_task_seconds > 0 ? duration(r.mean_task_seconds) : "–")])),
    4, "no figures yet");

  fill("batch-rows", s.batches.map(b => {
    const share = b.total ? Math.min(1, b.settled / b.total) : 0;
    const bar = el("div", undefined, "progress");
    const done = el("div");
    done.style.width = Math.round(share * 100) + "%";
    bar.appendChild(done);
    const progress = el("td");
    progress.appendChild(bar);
    const tr = row([el("td", b.id.slice(-8), "id"), el("td", b.client, "id wide"), progress,
                    num(b.settled + " / " + (b.total === null ? "open" : b.total)), el("td", b.queued, "num wide"),
                    el("td", b.running, "num wide"), el("td", b.failed, "num" + (b.failed > 0 ? " bad" : "")),
                    num(duration(b.age_seconds))]);
    tr.className = "batch";
    tr.dataset.batch = b.id;
    return tr;
  }), 8, "no batch running");
  document.getElementById("batches-note").textContent =
    s.batches_total > s.batches.length ? "(the oldest " + s.batches.length + " of " + s.batches_total + ")" : "";

  const d = s.deferred;
  tiles("deferred-tiles", [["pending", d.pending], ["running", d.running], ["done since start", d.done],
                           ["dead", d.dead, d.dead > 0 ? "bad" : ""]]);
  fill("dead-rows", d.dead_tasks.map(t => {
    const tr = row([el("td", t.receipt), num(t.index), num(t.attempts), el("td", t.error, "text bad")]);
    tr.className = "dead";
    return tr;
  }), 4, "no dead task");
  document.getElementById("dead-note").textContent =
    d.dead_total > d.dead_tasks.length ? "(" + d.dead_tasks.length + " of " + d.dead_total + ")" : "";

  fill("completed-rows", Object.entries(s.completed).filter(([, n]) => n > 0).map(([k, n]) =>
    row([el("td", k, k === "success" ? "ok" : "bad"), num(n)])), 2, "nothing settled yet");
  fill("refused-rows", Object.entries(s.refused).map(([k, n]) =>
    row([el("td", k), el("td", n, "num" + (n > 0 ? " warn" : ""))])), 2, "none");
}

async function refresh() {
  try {
    const answer = await fetch("status.json", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
    document.body.dataset.state = "live";
    document.getElementById("state").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    document.body.dataset.state = "stale";
    document.getElementById("state").textContent = "cannot reach the broker (" + error.message + "), retrying";
  }
  setTimeout(refresh, 2000);
}
refresh();
</script>
</body>
</html>
)page";

}  // namespace

std::string_view status_page_html() noexcept { return kPage; }

}  // namespace fanout::broker
