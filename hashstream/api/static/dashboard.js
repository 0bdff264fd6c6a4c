// hashstream ops dashboard: polls the JSON API and draws every chart on <canvas>, no build step.
// Each chart records how many data points it drew in data-points (the browser test reads it).
"use strict";

const POLL_MS = 2000;
const COLORS = ["#2f6fdf", "#e0583a", "#2aa876", "#9b59b6", "#e6a700", "#17a2b8", "#6c757d",
                "#d63384"];
const state = { index: null, rounds: [], lastRound: 0, queue: [], centersVersion: -1 };
const T0 = Date.now();

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

// --- charts ------------------------------------------------------------------------------
function setup(canvas) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

function frame(ctx, canvas, xmin, xmax, ymin, ymax, xlabel) {
  const pad = { l: 48, r: 10, t: 10, b: 26 };
  const w = canvas.width - pad.l - pad.r, h = canvas.height - pad.t - pad.b;
  if (ymax === ymin) { ymax = ymin + 1; }
  if (xmax === xmin) { xmax = xmin + 1; }
  const sx = (x) => pad.l + ((x - xmin) / (xmax - xmin)) * w;
  const sy = (y) => pad.t + h - ((y - ymin) / (ymax - ymin)) * h;
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#555";
  for (let i = 0; i <= 4; i++) {
    const y = ymin + ((ymax - ymin) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, sy(y)); ctx.lineTo(pad.l + w, sy(y)); ctx.stroke();
    ctx.fillText(Math.abs(y) >= 1000 ? y.toExponential(1) : +y.toFixed(3), 2, sy(y) + 4);
  }
  ctx.fillText(String(+xmin.toFixed(2)), pad.l, canvas.height - 8);
  ctx.fillText(String(+xmax.toFixed(2)) + (xlabel ? "  " + xlabel : ""), pad.l + w - 60,
               canvas.height - 8);
  return { sx, sy };
}

function legend(ctx, canvas, names) {
  names.forEach((n, i) => {
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(60 + (i % 4) * 120, 12 + Math.floor(i / 4) * 13, 10, 8);
    ctx.fillStyle = "#333";
    ctx.fillText(n, 74 + (i % 4) * 120, 20 + Math.floor(i / 4) * 13);
  });
}

// series: [{name, points: [[x, y], …]}]
function lineChart(id, series, opts = {}) {
  const canvas = document.getElementById(id);
  const ctx = setup(canvas);
  const pts = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
  canvas.dataset.points = String(pts.length);
  if (!pts.length) { ctx.fillText("no data yet", 20, 30); return; }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const ymin = opts.ymin ?? Math.min(...ys), ymax = opts.ymax ?? Math.max(...ys);
  const { sx, sy } = frame(ctx, canvas, Math.min(...xs), Math.max(...xs), ymin, ymax,
                           opts.xlabel);
  series.forEach((s, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (y === null || !isFinite(y)) { started = false; continue; }
      if (!started) { ctx.moveTo(sx(x), sy(y)); started = true; } else { ctx.lineTo(sx(x), sy(y)); }
    }
    ctx.stroke();
    if (s.points.length < 60) {
      ctx.fillStyle = COLORS[i % COLORS.length];
      for (const [x, y] of s.points) {
        if (y !== null && isFinite(y)) { ctx.fillRect(sx(x) - 2, sy(y) - 2, 4, 4); }
      }
    }
  });
  legend(ctx, canvas, series.map((s) => s.name));
}

function barChart(id, values, opts = {}) {
  const canvas = document.getElementById(id);
  const ctx = setup(canvas);
  canvas.dataset.points = String(values.length);
  if (!values.length) { ctx.fillText("no data yet", 20, 30); return; }
  const ymax = opts.ymax ?? Math.max(...values, 1);
  const { sx, sy } = frame(ctx, canvas, 0, values.length, 0, ymax, opts.xlabel);
  const bw = Math.max(1, sx(1) - sx(0) - 1);
  values.forEach((v, i) => {
    ctx.fillStyle = opts.color ? opts.color(v) : COLORS[0];
    ctx.fillRect(sx(i), sy(v), bw, sy(0) - sy(v));
  });
  if (opts.line !== undefined) {
    ctx.strokeStyle = "#e0583a"; ctx.beginPath();
    ctx.moveTo(sx(0), sy(opts.line)); ctx.lineTo(sx(values.length), sy(opts.line)); ctx.stroke();
  }
}

function stackedBars(id, rows, keys) {
  const canvas = document.getElementById(id);
  const ctx = setup(canvas);
  canvas.dataset.points = String(rows.length * keys.length);
  if (!rows.length) { ctx.fillText("no data yet", 20, 30); return; }
  const totals = rows.map((r) => keys.reduce((a, k) => a + (r.values[k] || 0), 0));
  const xs = rows.map((r) => r.x);
  const { sx, sy } = frame(ctx, canvas, Math.min(...xs), Math.max(...xs) + 1, 0,
                           Math.max(...totals), "round");
  const bw = Math.max(1, (sx(xs[0] + 1) - sx(xs[0])) - 1);
  rows.forEach((r) => {
    let base = 0;
    keys.forEach((k, i) => {
      const v = r.values[k] || 0;
      ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.fillRect(sx(r.x), sy(base + v), bw, sy(base) - sy(base + v));
      base += v;
    });
  });
  legend(ctx, canvas, keys);
}

function heatMap(id, matrix, bits) {
  const canvas = document.getElementById(id);
  const ctx = setup(canvas);
  const c = matrix.length;
  canvas.dataset.points = String(c * c);
  if (!c) { ctx.fillText("no round yet", 20, 30); return; }
  const cell = Math.max(1, Math.floor(Math.min(canvas.width, canvas.height) / c));
  for (let i = 0; i < c; i++) {
    for (let j = 0; j < c; j++) {
      const t = matrix[i][j] / bits;  // 0 = same code, 0.5 = orthogonal, 1 = opposite
      const g = Math.round(255 * Math.min(1, t * 2));
      ctx.fillStyle = `rgb(${255 - g}, ${Math.round(g * 0.8)}, ${g})`;
      ctx.fillRect(j * cell, i * cell, cell, cell);
      if (cell >= 22) {
        ctx.fillStyle = "#fff"; ctx.fillText(String(matrix[i][j]), j * cell + 3, i * cell + 14);
      }
    }
  }
}

// --- data --------------------------------------------------------------------------------
function drawIndex() {
  const r = state.rounds;
  const x = (rec) => rec.round;
  lineChart("chart-map", [
    { name: "mAP", points: r.map((rec) => [x(rec), rec.map]) },
    { name: "mAP tie-aware", points: r.map((rec) => [x(rec), rec.map_tie_aware]) },
    { name: "precision@r2", points: r.map((rec) => [x(rec), rec.precision_r2]) },
  ], { ymin: 0, ymax: 1, xlabel: "round" });
  const terms = ["old", "exemplar", "quantization", "distillation", "hadamard", "center"];
  lineChart("chart-loss", terms.map((t) => ({
    name: t,
    points: r.map((rec) => [x(rec), rec.loss && rec.loss[t] > 0 ? Math.log10(rec.loss[t]) : null]),
  })), { xlabel: "round" });
  stackedBars("chart-seconds", r.map((rec) => ({ x: x(rec), values: rec.seconds || {} })),
              ["features", "exemplar_similarity", "v", "b", "y", "p", "memory", "commit"]);
  lineChart("chart-size", [
    { name: "items (÷1000)", points: r.map((rec) => [x(rec), rec.n_database / 1000]) },
    { name: "classes", points: r.map((rec) => [x(rec), rec.n_classes]) },
  ], { ymin: 0, xlabel: "round" });
  const last = r.length ? r[r.length - 1] : null;
  barChart("chart-exemplars", last ? last.exemplar_histogram || [] : [], { xlabel: "class" });
  barChart("chart-bits", last ? last.bit_balance || [] : [], {
    ymax: 1, line: 0.5, xlabel: "bit",
    color: (v) => (Math.abs(v - 0.5) > 0.3 ? "#e0583a" : "#2f6fdf"),
  });
  const pr = last && last.pr_curve;
  lineChart("chart-pr", pr ? [{ name: "precision vs recall",
    points: pr.recall.map((rc, i) => [rc, pr.precision[i]]) }] : [],
    { ymin: 0, ymax: 1, xlabel: "recall" });
  lineChart("chart-queue", [{ name: "queue depth", points: state.queue }],
            { ymin: 0, xlabel: "s since page load" });
}

async function refreshCenters() {
  const data = await getJSON(`/indexes/${encodeURIComponent(state.index)}/centers`);
  const rounds = data.rounds;
  const latest = rounds[rounds.length - 1], previous = rounds.length > 1 ? rounds[0] : null;
  heatMap("heat-latest", latest ? latest.distances : [], latest ? latest.bits : 1);
  heatMap("heat-previous", previous ? previous.distances : [], previous ? previous.bits : 1);
  document.getElementById("heat-latest-caption").textContent =
    latest ? `round ${latest.round}` : "latest round";
  document.getElementById("heat-previous-caption").textContent =
    previous ? `round ${previous.round}` : "previous round";
}

function fmt(v, digits = 4) { return v === null || v === undefined ? "–" : (+v).toFixed(digits); }

function drawTable(rows) {
  const body = document.querySelector("#index-table tbody");
  body.innerHTML = "";
  for (const row of rows) {
    const tr = document.createElement("tr");
    if (row.name === state.index) tr.className = "selected";
    tr.innerHTML = `<td>${row.name}</td><td>${row.model_version}</td><td>${row.n_database}</td>
      <td>${row.n_classes}</td><td>${row.queue_depth}</td>
      <td class="${row.dead_letters ? "alert" : ""}">${row.dead_letters ?? 0}</td><td>${fmt(row.map)}</td>
      <td>${fmt(row.precision_r2)}</td><td>${fmt(row.seconds, 3)}</td>`;
    tr.onclick = () => select(row.name);
    body.appendChild(tr);
  }
  const sel = document.getElementById("index-select");
  const names = rows.map((r) => r.name);
  if ([...sel.options].map((o) => o.value).join() !== names.join()) {
    sel.innerHTML = names.map((n) => `<option>${n}</option>`).join("");
  }
  sel.value = state.index || "";
}

function select(name) {
  if (name === state.index) return;
  Object.assign(state, { index: name, rounds: [], lastRound: 0, queue: [], centersVersion: -1 });
  const url = new URL(location.href);
  url.searchParams.set("index", name);
  history.replaceState(null, "", url);
  tick();
}

let ticking = false;
async function tick() {
  if (ticking) return;
  ticking = true;
  const status = document.getElementById("status");
  try {
    const summary = await getJSON("/dashboard/summary");
    const names = summary.indexes.map((r) => r.name);
    if (!state.index || !names.includes(state.index)) {
      const wanted = new URL(location.href).searchParams.get("index");
      state.index = names.includes(wanted) ? wanted : names[0] || null;
    }
    drawTable(summary.indexes);
    if (state.index) {
      const data = await getJSON(
        `/indexes/${encodeURIComponent(state.index)}/rounds?since=${state.lastRound}`);
      if (data.rounds.length) {
        state.rounds.push(...data.rounds);
        state.lastRound = state.rounds[state.rounds.length - 1].round;
      }
      state.queue.push([(Date.now() - T0) / 1000, data.queue_depth]);
      if (state.queue.length > 300) state.queue.shift();
      document.getElementById("queue-depth").textContent = String(data.queue_depth);
      drawIndex();
      if (state.centersVersion !== state.lastRound) {
        state.centersVersion = state.lastRound;
        await refreshCenters();
      }
    }
    status.textContent = `live · ${new Date().toLocaleTimeString()} · ${names.length} indexes`;
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
