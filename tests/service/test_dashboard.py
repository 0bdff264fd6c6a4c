"""The ops dashboard in a real browser (Debian's headless Chromium) against a live service, and
Prometheus /metrics parsed by prometheus_client's own parser."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from support.browser import chromium

from hashstream.store.keys import IndexKeys

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "screenshots"
CHARTS = ["chart-map", "chart-loss", "chart-seconds", "chart-size", "chart-exemplars",
          "chart-bits", "chart-queue", "chart-pr", "heat-latest", "heat-previous"]


def browse(url: str, tmp_path: Path, *, screenshot: Path | None = None,
           budget_ms: int = 8000) -> str:
    """Load ``url`` in headless Chromium, let its scripts run, return the DOM it built."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1300,1900", f"--virtual-time-budget={budget_ms}"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(args + [f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120, check=False)
    out = subprocess.run(args + ["--dump-dom", url], capture_output=True, timeout=120,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def drawn_points(dom: str) -> dict[str, int]:
    """data-points of every canvas (how many data points each chart drew)."""
    points = {}
    for tag in re.findall(r"<canvas[^>]*>", dom):
        ident = re.search(r'id="([^"]+)"', tag)
        count = re.search(r'data-points="(\d+)"', tag)
        if ident:
            points[ident.group(1)] = int(count.group(1)) if count else 0
    return points


def feed_rounds(server: Any, name: str, hs: Any, rounds: int) -> None:
    data = hs.Clusters(seed=7, dim=24, n_classes=6)
    server.create_index(name, 24)
    x, y = data.sample(150)
    server.ingest(name, hs.json_chunk(x, y, role="query"))
    for t in range(rounds):
        x, y = data.sample(300, classes=range(min(6, 2 + t)))  # classes keep arriving
        server.ingest(name, hs.json_chunk(x, y))
        hs.wait_until(lambda t=t: server.http.get(f"/indexes/{name}").json()["model_version"]
                      >= t + 1, what=f"round {t + 1}")


def test_dashboard_draws_the_rounds_of_a_live_service(start_server: Any, hs: Any,
                                                      tmp_path: Path) -> None:
    server = start_server("dash", workers=1)
    name = hs.unique("dash")
    feed_rounds(server, name, hs, rounds=4)
    shot = SCREENSHOTS / "dashboard.png"
    dom = browse(f"{server.url}/dashboard?index={name}", tmp_path, screenshot=shot)
    points = drawn_points(dom)
    assert 'data-ready="1"' in dom, "the page never finished a refresh"
    assert points["chart-map"] == 12  # mAP, tie-aware mAP and precision@r2 for 4 rounds
    assert points["chart-size"] == 8
    assert points["chart-loss"] >= 4 * 4  # several positive loss terms per round
    assert points["chart-seconds"] > 0
    assert points["chart-exemplars"] == 5  # classes 0..4 streamed so far
    assert points["chart-bits"] == 16 and points["chart-pr"] == 17  # radii 0..16
    assert points["chart-queue"] >= 1
    assert points["heat-latest"] == 25 and points["heat-previous"] > 0
    assert name in dom and shot.exists() and shot.stat().st_size > 10_000


def test_dashboard_with_1000_rounds_and_50_indexes(start_server: Any, store_for: Any, hs: Any,
                                                   tmp_path: Path) -> None:
    server = start_server("dash-big", workers=0)
    store = store_for("dash-big")
    names = [f"{hs.unique('many')}-{i:02d}" for i in range(50)]
    for name in names:
        store.create_index(name, {"name": name, "dim": 8, "settings": {"bits": 32}})
    big = IndexKeys(store.prefix, names[0])
    rng = np.random.default_rng(0)
    pipe = store.r.pipeline()
    for rnd in range(1, 1001):  # records shaped like the worker's, written straight to Redis
        pipe.rpush(big.rounds, json.dumps({
            "round": rnd, "model_version": rnd, "map": 0.5 + 0.4 * rnd / 1000,
            "precision_r2": 0.4 + 0.3 * rnd / 1000, "n_database": 2000 * rnd,
            "n_classes": min(10, rnd), "loss": {"old": 1e6 + rnd, "center": 1e4},
            "seconds": {"v": 0.01, "b": 0.005, "p": 0.05}, "n_items": 2000,
            "bit_balance": rng.random(32).round(3).tolist(),
            "exemplar_histogram": [200] * 10,
            "pr_curve": {"radius": list(range(33)), "precision": [0.9] * 33,
                         "recall": np.linspace(0, 1, 33).tolist()}}))
    pipe.set(big.version, 1000)
    pipe.execute()
    start = time.perf_counter()
    dom = browse(f"{server.url}/dashboard?index={names[0]}", tmp_path, budget_ms=15000)
    elapsed = time.perf_counter() - start
    points = drawn_points(dom)
    assert points["chart-map"] == 2000 and points["chart-size"] == 2000
    assert dom.count("<tr") >= 51  # header + one row per index
    print(f"dashboard with 1000 rounds and 50 indexes loaded in {elapsed:.1f}s (headless)")


def test_metrics_parse_with_prometheus_parser(start_server: Any, hs: Any) -> None:
    server = start_server("metrics", workers=1)
    name = hs.unique("met")
    feed_rounds(server, name, hs, rounds=2)
    server.http.get(f"/indexes/{name}/search", params={"item": 3})
    text = server.http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["hashstream_http_requests"].samples
    assert any(s.labels["route"] == "/indexes/{name}/ingest" and s.labels["status"] == "202"
               and s.value >= 3 for s in requests)
    latency = [s for s in families["hashstream_http_request_seconds"].samples
               if s.name.endswith("_count") and s.labels["route"] == "/indexes/{name}/search"]
    assert latency and latency[0].value >= 1
    gauges = {f: {s.labels["index"]: s.value for s in families[f].samples}
              for f in ("hashstream_rounds", "hashstream_database_items",
                        "hashstream_queue_depth", "hashstream_round_seconds")}
    assert gauges["hashstream_rounds"][name] == 2
    assert gauges["hashstream_database_items"][name] == 600
    assert gauges["hashstream_queue_depth"][name] == 0
    assert gauges["hashstream_round_seconds"][name] > 0
