// status_page.hpp: the status page at `/` of fanout-broker --metrics: one self-contained HTML
// document (inline CSS and JavaScript, no external asset, readable on a phone) that fetches
// status.json (status_json.hpp) every two seconds and renders it.
//
// Promises: every figure and every piece of peer text enters the document through textContent or
// an attribute set by the DOM, never as markup, so a worker id like `<img onerror=...>` shows as
// that text. The page keeps working when a fetch fails (it says so and tries again); `data-state`
// on <body> is "loading", then "live" after a fetch rendered, or "stale" after one failed.
#pragma once

#include <string_view>

namespace fanout::broker {

std::string_view status_page_html() noexcept;

}  // namespace fanout::broker
