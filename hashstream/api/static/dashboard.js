// hashstream ops dashboard: polls the JSON API and draws its charts with plotly.js (served from
// the installed plotly package, no build step, no CDN). Every chart records how many data
// points it drew in data-points and every table its rows in data-rows (the browser test reads
// them); a chart is redrawn only when its data changed, so a hover label stays put.
"use strict";

const POLL_MS = 2000;
const QUEUE_SAMPLES = 300;
const COLORS = ["#2f6fdf", "#e0583a", "#2aa876", "#9b59b6", "#e6a700", "#17a2b8", "#d63384",
                "#8c564b", "#7f8c1d", "#1d2330"];
// Drag to zoom, double-click to zoom back out; no toolbar over the legends.
const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const state = { backlogLimits: { items: 0, seconds: 0 },
                index: null, rounds: [], lastRound: 0, queue: [], drawn: {},
                deadLetters: -1, workersKey: "" };

// --- the API ----------------------------------------------------------------------------
function apiKey() { return localStorage.getItem("hashstream-api-key") || ""; }

async function getJSON(path) {
  const headers = apiKey() ? { Authorization: "Bearer " + apiKey() } : {};
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    const key = prompt("API key for this hashstream service");
    if (key) { localStorage.setItem("hashstream-api-key", key); return getJSON(path); }
  }
  if (!res.ok) throw new Error(path + " → " + res.status);
  return res.json();
}

function indexPath(suffix) { return `/indexes/${encodeURIComponent(state.index)}${suffix}`; }

// --- chart helpers ----------------------------------------------------------------------
function layout(xTitle, yTitle, extra = {}) {
  return {
    margin: { l: 64, r: 12, t: 8, b: 44 }, font: { size: 11 }, hovermode: "closest",
    legend: { x: 1.02, xanchor: "left", y: 1, yanchor: "top" },  // beside the plot
    xaxis: { title: { text: xTitle }, zeroline: false, automargin: true },
    yaxis: { title: { text: yTitle }, zeroline: false, automargin: true },
    ...extra,
  };
}

// Integer ticks on a round axis (one per round while few), half a round of room at each end.
function roundAxis(rounds, title = "round") {
  const lo = Math.min(...rounds), hi = Math.max(...rounds);
  return { title: { text: title }, tickformat: "d", hoverformat: "d", zeroline: false,
           range: [lo - 0.5, hi + 0.5], dtick: hi - lo < 12 ? 1 : undefined };
}

// A count axis from 0 with whole-number ticks (one per unit while the counts are small).
function countAxis(title, max) {
  const top = Math.max(1, max);
  return { title: { text: title }, range: [0, top * 1.1], tickformat: "d",
           dtick: top <= 8 ? 1 : undefined, zeroline: false };
}

function countPoints(traces) {
  let n = 0;
  for (const t of traces) {
    if (t.meta && t.meta.reference) continue;
    if (t.z) { n += t.z.reduce((a, row) => a + row.length, 0); continue; }
    n += (t.y || []).filter((v) => v !== null && v !== undefined && isFinite(v)).length;
  }
  return n;
}

function draw(id, traces, plotLayout) {
  const el = document.getElementById(id);
  el.dataset.points = String(countPoints(traces));
  Plotly.react(el, traces, plotLayout, PLOT_CONFIG);
}

function drawEmpty(id, message) {
  draw(id, [], { margin: { l: 10, r: 10, t: 10, b: 10 }, xaxis: { visible: false },
                 yaxis: { visible: false },
                 annotations: [{ text: message, showarrow: false, font: { color: "#5b6270" },
                                 xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] });
}

// Redraw ``id`` only when ``key`` (what its data depends on) changed since its last drawing.
function changed(id, key) {
  if (state.drawn[id] === key) return false;
  state.drawn[id] = key;
  return true;
}

function line(name, x, y, i, extra = {}) {
  return { type: "scatter", mode: x.length < 60 ? "lines+markers" : "lines", name, x, y,
           line: { color: COLORS[i % COLORS.length], width: 2 }, marker: { size: 6 }, ...extra };
}

// --- per-round charts -------------------------------------------------------------------
function drawQuality(r) {
  const rounds = r.map((rec) => rec.round);
  const series = [["mAP", "map"], ["mAP, tie-aware", "map_tie_aware"],
                  ["precision at radius 2", "precision_r2"]];
  draw("chart-map", series.map(([name, key], i) => line(name, rounds,
    r.map((rec) => rec[key] ?? null), i, { hovertemplate: "%{y:.4f}" })),
  layout("", "score (0–1)", { hovermode: "x unified", xaxis: roundAxis(rounds),
                              yaxis: { title: { text: "score (0–1)" }, range: [0, 1.02] } }));
}

function drawLoss(r) {
  const rounds = r.map((rec) => rec.round);
  const terms = [...new Set(r.flatMap((rec) => Object.keys(rec.loss || {})))];
  const traces = terms.map((t, i) => line(t, rounds,
    r.map((rec) => (rec.loss && rec.loss[t] > 0 ? rec.loss[t] : null)), i,
    { hovertemplate: "%{y:.4g}", connectgaps: false }));
  draw("chart-loss", traces, layout("", "term value", {
    hovermode: "x unified", xaxis: roundAxis(rounds),
    yaxis: { title: { text: "term value (log scale)" }, type: "log", exponentformat: "power" },
  }));
}

// A round's parts: every timed step, then "other" = the round's wall time less the steps
// (records written before the worker timed every part have only the method's steps and
// "learn"), so that each stack adds up to the round.
const TOTALS = ["learn", "total"];
const FIRST = ["read", "load"], LAST = ["other", "score", "commit"];

function roundWall(seconds) {
  return (seconds.total ?? seconds.learn ?? 0) + (seconds.commit ?? 0);
}

function roundParts(seconds) {
  const parts = {};
  for (const [k, v] of Object.entries(seconds)) if (!TOTALS.includes(k)) parts[k] = v;
  const named = Object.values(parts).reduce((a, v) => a + v, 0);
  const rest = roundWall(seconds) - named;
  if (rest > 5e-4) parts.other = (parts.other || 0) + rest;
  return parts;
}

function partOrder(rows) {
  const seen = [...new Set(rows.flatMap((p) => Object.keys(p)))];
  const middle = seen.filter((k) => !FIRST.includes(k) && !LAST.includes(k));
  return [...FIRST, ...middle, ...LAST].filter((k) => seen.includes(k));
}

function drawSeconds(r) {
  const rounds = r.map((rec) => rec.round);
  const parts = r.map((rec) => roundParts(rec.seconds || {}));
  const traces = partOrder(parts).map((k, i) => ({
    type: "bar", name: k, x: rounds, y: parts.map((p) => p[k] ?? 0),
    marker: k === "other" ? { color: "#c9ced6", pattern: { shape: "/", fgcolor: "#7d8590" } }
                          : { color: COLORS[i % COLORS.length] },
    hovertemplate: "%{y:.3f} s",
  }));
  traces.push({ type: "scatter", mode: "markers", name: "round (wall)", x: rounds,
                y: r.map((rec) => roundWall(rec.seconds || {})), hovertemplate: "%{y:.3f} s",
                marker: { symbol: "diamond", size: 8, color: "#1d2330" } });
  draw("chart-seconds", traces, layout("", "seconds", {
    barmode: "stack", hovermode: "x unified", xaxis: roundAxis(rounds),
    yaxis: { title: { text: "seconds" }, rangemode: "tozero" } }));
}

function drawSize(r) {
  const rounds = r.map((rec) => rec.round);
  draw("chart-size", [
    line("items", rounds, r.map((rec) => rec.n_database), 0, { hovertemplate: "%{y:,} items" }),
    line("classes", rounds, r.map((rec) => rec.n_classes), 1,
         { yaxis: "y2", hovertemplate: "%{y} classes" }),
  ], layout("", "", {
    hovermode: "x unified", xaxis: roundAxis(rounds),
    yaxis: { ...countAxis("items in the code store",
                          Math.max(...r.map((rec) => rec.n_database))),
             separatethousands: true },
    yaxis2: { ...countAxis("classes seen", Math.max(...r.map((rec) => rec.n_classes))),
              overlaying: "y", side: "right", showgrid: false },
    margin: { l: 72, r: 56, t: 8, b: 44 }, legend: { x: 1.1, xanchor: "left", y: 1 },
  }));
}

// --- latest-round charts ----------------------------------------------------------------
function classAxis(n, title) {
  return { title: { text: title }, tickformat: "d", range: [-0.5, n - 0.5],
           dtick: n <= 20 ? 1 : undefined, zeroline: false };
}

function drawExemplars(last) {
  const counts = (last && last.exemplar_histogram) || [];
  if (!counts.length) {
    drawEmpty("chart-exemplars", last ? "this index's method keeps no exemplar memory"
                                      : "no round yet");
    return;
  }
  draw("chart-exemplars", [{ type: "bar", name: "exemplars", x: counts.map((_, i) => i),
    y: counts, marker: { color: COLORS[0] },
    hovertemplate: "class %{x}: %{y} items<extra></extra>" }],
  layout("", "", { showlegend: false, xaxis: classAxis(counts.length, "class (internal number)"),
                   yaxis: countAxis("items kept", Math.max(...counts)) }));
}

const SKEW = 0.3;  // a bit set in under 20 % or over 80 % of the codes carries little

function drawBits(last) {
  const balance = (last && last.bit_balance) || [];
  if (!balance.length) { drawEmpty("chart-bits", "no round yet"); return; }
  const bits = balance.map((_, i) => i);
  const pick = (skewed) => balance.map((v) => ((Math.abs(v - 0.5) > SKEW) === skewed ? v : null));
  const bar = (name, skewed, color) => ({ type: "bar", name, x: bits, y: pick(skewed),
    marker: { color }, hovertemplate: "bit %{x}: %{y:.3f} set<extra></extra>" });
  draw("chart-bits", [
    bar("balanced", false, COLORS[0]),
    bar(`skewed (under ${0.5 - SKEW} or over ${0.5 + SKEW})`, true, COLORS[1]),
    { type: "scatter", mode: "lines", name: "½ (ideal)", x: [-0.5, bits.length - 0.5],
      y: [0.5, 0.5], line: { color: "#1d2330", dash: "dash", width: 1 }, hoverinfo: "skip",
      meta: { reference: true } },
  ], layout("", "", { barmode: "overlay", xaxis: classAxis(bits.length, "bit"),
                      yaxis: { title: { text: "share of codes with the bit set" },
                               range: [0, 1] } }));
}

function drawPR(last) {
  const pr = last && last.pr_curve;
  if (!pr) { drawEmpty("chart-pr", "no held-out queries yet"); return; }
  draw("chart-pr", [line("precision vs recall", pr.recall, pr.precision, 0, {
    customdata: pr.radius,
    hovertemplate: "radius %{customdata}: recall %{x:.3f}, precision %{y:.3f}<extra></extra>",
  })], layout("recall", "precision", { showlegend: false,
    xaxis: { title: { text: "recall" }, range: [0, 1.02] },
    yaxis: { title: { text: "precision" }, range: [0, 1.02] } }));
}

// Rows written to each partition over all rounds (a partitioned index records them per round;
// an older record of an unpartitioned index has only the database size).
function drawPartitions(r, partitions) {
  const totals = new Array(partitions).fill(0);
  let known = false;
  for (const rec of r) {
    if (!rec.partition_items) continue;
    known = true;
    rec.partition_items.forEach((n, p) => { totals[p] = (totals[p] || 0) + n; });
  }
  if (!known && partitions === 1 && r.length) {
    totals[0] = r[r.length - 1].n_database;
    known = true;
  }
  if (!known) { drawEmpty("chart-partitions", "no round recorded its partitions yet"); return; }
  draw("chart-partitions", [{ type: "bar", name: "rows", x: totals.map((_, p) => p), y: totals,
    marker: { color: COLORS[2] }, hovertemplate: "partition %{x}: %{y:,} rows<extra></extra>" }],
  layout("", "", { showlegend: false, xaxis: classAxis(totals.length, "partition"),
                   yaxis: { ...countAxis("code rows", Math.max(...totals)),
                            separatethousands: true } }));
}

function drawHeat(id, round, missing) {
  if (!round) { drawEmpty(id, missing); return; }
  const bits = round.bits;
  draw(id, [{ type: "heatmap", z: round.distances, zmin: 0, zmax: bits,
    colorscale: [[0, "#d7301f"], [0.5, "#e8f6f8"], [1, "#2166ac"]],
    colorbar: { title: { text: "bits", side: "right" }, tickvals: [0, bits / 2, bits],
                ticktext: ["0 same", `${bits / 2} orthogonal`, `${bits} opposite`] },
    hovertemplate: "class %{y} vs %{x}: %{z} bits apart<extra></extra>" }],
  layout(`class · round ${round.round}`, "class", {
    xaxis: { title: { text: `class · round ${round.round}` }, tickformat: "d",
             constrain: "domain" },
    yaxis: { title: { text: "class" }, tickformat: "d", autorange: "reversed",
             scaleanchor: "x" } }));
}

// --- the queue (sampled by this page) ---------------------------------------------------
// Items waiting beside ingest's backlog limit (HASHSTREAM_MAX_QUEUED_ITEMS, dashed; at or past
// it ingest answers 429), how long the oldest chunk has waited, and the ingests refused.
function drawQueue() {
  const q = state.queue;
  const x = q.map((s) => s.at);
  const end = x[x.length - 1].getTime(), span = Math.max(60e3, end - x[0].getTime());
  const limit = state.backlogLimits.items;
  const traces = [
    line("items waiting", x, q.map((s) => s.items), 0,
         { customdata: q.map((s) => s.depth),
           hovertemplate: "%{y:,} items in %{customdata} chunks" }),
    line("oldest waited", x, q.map((s) => s.lag), 1,
         { yaxis: "y2", hovertemplate: "%{y:.1f} s" }),
  ];
  if (limit > 0) {
    traces.push(line("backlog limit (429 at or past)", [x[0], x[x.length - 1]],
                     [limit, limit], 3,
                     { mode: "lines", line: { color: COLORS[3], width: 1.5, dash: "dash" },
                       hovertemplate: "%{y:,} items" }));
  }
  const refused = q[q.length - 1].refused - q[0].refused;
  document.getElementById("queue-refusals").textContent =
    `${refused.toLocaleString()} ingests refused (429) since this page opened`
    + (q[q.length - 1].rate
       ? ` · recent rounds learn ${Math.round(q[q.length - 1].rate).toLocaleString()} items/s`
       : "");
  // the limit line is in view once the backlog nears it (a quarter of the way)
  const most = Math.max(...q.map((s) => s.items));
  const top = Math.max(most, limit > 0 && most > limit / 4 ? limit : 0);
  draw("chart-queue", traces, layout("", "", {
    hovermode: "x unified",
    xaxis: { title: { text: "time (this browser's clock)" }, type: "date",
             hoverformat: "%H:%M:%S", range: [new Date(end - span), new Date(end + 2e3)] },
    yaxis: countAxis("items waiting", top),
    yaxis2: { title: { text: "oldest chunk has waited (s)" }, overlaying: "y", side: "right",
              range: [0, Math.max(1, ...q.map((s) => s.lag)) * 1.1], showgrid: false,
              zeroline: false },
    margin: { l: 64, r: 56, t: 8, b: 44 }, legend: { x: 1.1, xanchor: "left", y: 1 },
  }));
}

// --- tables -----------------------------------------------------------------------------
function fmt(v, digits = 4) { return v === null || v === undefined ? "–" : (+v).toFixed(digits); }

function span(seconds) {
  const s = Math.max(0, seconds);
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function ago(seconds) {
  return seconds === null || seconds === undefined ? "–" : span(seconds) + " ago";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 100 ? `${(+seconds).toFixed(2)} s` : `${(seconds / 60).toFixed(1)} min`;
}

function tableRow(cells, classes = []) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (classes[i]) td.className = classes[i];
    tr.appendChild(td);
  });
  return tr;
}

function fillTable(id, rows, empty) {
  const table = document.getElementById(id);
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = tableRow([empty], ["empty"]);
    tr.firstChild.colSpan = table.querySelectorAll("thead th").length;
    body.appendChild(tr);
  }
  table.dataset.rows = String(rows.length);
}

function drawIndexTable(rows, now) {
  fillTable("index-table", rows.map((row) => {
    const tr = tableRow([row.name, row.method, row.bits, row.partitions, row.model_version,
      row.n_database.toLocaleString(), row.n_classes, row.queue_depth,
      duration(row.queue_lag_s), row.dead_letters, fmt(row.map), fmt(row.precision_r2),
      duration(row.seconds), ago(now - row.last_active), row.lease_holder || "–"],
    { 9: row.dead_letters ? "alert" : "" });
    if (row.name === state.index) tr.className = "selected";
    tr.onclick = () => select(row.name);
    return tr;
  }), "no index yet");
  const sel = document.getElementById("index-select");
  const names = rows.map((r) => r.name);
  if ([...sel.options].map((o) => o.value).join() !== names.join()) {
    sel.replaceChildren(...names.map((n) => new Option(n, n)));
  }
  sel.value = state.index || "";
}

function drawWorkers(workers, now) {
  fillTable("worker-table", workers.map((w) => tableRow([w.id, w.backend || "–",
    w.hamming_kernel || "–", w.started ? span(now - w.started) : "–",
    w.holding.join(", ") || "idle",
    w.latest_round ? `${w.latest_round.index} #${w.latest_round.round}, `
                     + ago(now - w.latest_round.ts) : "–"])),
  "no live worker: chunks wait until one starts (hashstream worker)");
}

async function refreshDeadLetters(total) {
  if (total === state.deadLetters) return;
  const data = await getJSON(indexPath("/dead-letters?limit=50"));
  state.deadLetters = total;
  document.getElementById("dead-letter-note").textContent =
    `${data.total} chunk${data.total === 1 ? "" : "s"} of ${state.index} moved aside after `
    + "failed rounds (requeue: POST …/dead-letters/{id}/requeue)";
  fillTable("dead-letter-table", data.dead_letters.map((d) => tableRow([d.id, d.chunk_id,
    d.items ?? "–", d.attempts, d.reason, new Date(d.dead_at * 1000).toLocaleString()],
  { 4: "text" })), "none: every chunk of this index was learned or is waiting");
}

// --- refresh ----------------------------------------------------------------------------
function drawRounds(summaryRow) {
  const r = state.rounds;
  const key = `${state.index}:${state.lastRound}`;
  if (!changed("rounds", key)) return;
  if (!r.length) {
    for (const id of ["chart-map", "chart-seconds", "chart-loss", "chart-size"]) {
      drawEmpty(id, "no round yet");
    }
  } else {
    drawQuality(r); drawSeconds(r); drawLoss(r); drawSize(r);
  }
  const last = r.length ? r[r.length - 1] : null;
  drawExemplars(last); drawBits(last); drawPR(last);
  drawPartitions(r, summaryRow ? summaryRow.partitions : 1);
}

async function refreshCenters() {
  if (!changed("centers", `${state.index}:${state.lastRound}`)) return;
  const rounds = (await getJSON(indexPath("/centers"))).rounds;
  const latest = rounds[rounds.length - 1], previous = rounds.length > 1 ? rounds[0] : null;
  const none = state.rounds.length ? "this index's method keeps no hash centers"
                                   : "no round yet";
  drawHeat("heat-latest", latest, none);
  drawHeat("heat-previous", previous, latest ? "no earlier round" : none);
}

async function refreshIndex(summaryRow) {
  const shown = state.index;
  const data = await getJSON(indexPath(`/rounds?since=${state.lastRound}`));
  if (state.index !== shown) return;  // another index was picked meanwhile
  if (data.rounds.length) {
    state.rounds.push(...data.rounds);
    state.lastRound = state.rounds[state.rounds.length - 1].round;
  }
  state.queue.push({ at: new Date(), depth: data.queue_depth,
                     lag: summaryRow ? summaryRow.queue_lag_s : 0,
                     items: summaryRow ? summaryRow.queued_items : 0,
                     refused: summaryRow ? summaryRow.refusals : 0,
                     rate: summaryRow ? summaryRow.learn_rate : null });
  if (state.queue.length > QUEUE_SAMPLES) state.queue.shift();
  drawRounds(summaryRow);
  drawQueue();
  await refreshCenters();
  await refreshDeadLetters(summaryRow ? summaryRow.dead_letters : 0);
}

function select(name) {
  if (name === state.index) return;
  Object.assign(state, { index: name, rounds: [], lastRound: 0, queue: [], drawn: {},
                         deadLetters: -1 });
  const url = new URL(location.href);
  url.searchParams.set("index", name);
  history.replaceState(null, "", url);
  tick();
}

// The index shown: the one the address names, else the most recently active (listed first).
function chooseIndex(names) {
  if (state.index && names.includes(state.index)) return;
  const wanted = new URL(location.href).searchParams.get("index");
  state.index = names.includes(wanted) ? wanted : names[0] || null;
}

let ticking = false;
async function tick() {
  if (ticking) return;
  ticking = true;
  const status = document.getElementById("status");
  try {
    const summary = await getJSON("/dashboard/summary");
    state.backlogLimits = summary.backlog_limits || { items: 0, seconds: 0 };
    chooseIndex(summary.indexes.map((r) => r.name));
    drawIndexTable(summary.indexes, summary.now);
    drawWorkers(summary.workers, summary.now);
    if (state.index) {
      await refreshIndex(summary.indexes.find((r) => r.name === state.index));
    }
    status.textContent = `live · ${new Date().toLocaleTimeString()} · `
      + `${summary.indexes.length} indexes · ${summary.workers.length} workers`;
    document.body.dataset.ready = "1";
  } catch (err) {
    status.textContent = "error: " + err.message;
  } finally {
    ticking = false;
  }
}

document.getElementById("index-select").onchange = (e) => select(e.target.value);
tick();
setInterval(tick, POLL_MS);
