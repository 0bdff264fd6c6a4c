"""The ops dashboard in a real browser (Debian's headless Chromium, driven over the DevTools
protocol, offline) against a live service, and Prometheus /metrics parsed by prometheus_client's
own parser."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from support.devtools import Page

from hashstream.store.keys import IndexKeys

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "screenshots"
CHARTS = ["chart-map", "chart-seconds", "chart-loss", "chart-size", "chart-queue", "chart-pr",
          "chart-exemplars", "chart-bits", "chart-partitions", "heat-previous", "heat-latest"]
TABLES = ["index-table", "worker-table", "dead-letter-table"]
KEY = "dash-key"
# data-points of every chart and data-rows of every table, as the page recorded them
DRAWN = ("Object.fromEntries([...document.querySelectorAll('[data-points], [data-rows]')]"
         ".map((e) => [e.id, +(e.dataset.points ?? e.dataset.rows)]))")
# the centre of the last marker of the mAP chart's first trace, in viewport pixels
LAST_MAP_POINT = """(() => {
  const pts = document.querySelectorAll('#chart-map .scatterlayer .trace:first-child path.point');
  if (!pts.length) return null;
  const box = pts[pts.length - 1].getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
})()"""


def feed_rounds(server: Any, name: str, hs: Any, rounds: int, **settings: Any) -> None:
    data = hs.Clusters(seed=7, dim=24, n_classes=6)
    server.create_index(name, 24, **settings)
    x, y = data.sample(150)
    server.ingest(name, hs.json_chunk(x, y, role="query"))
    for t in range(rounds):
        x, y = data.sample(300, classes=range(min(6, 2 + t)))  # classes keep arriving
        server.ingest(name, hs.json_chunk(x, y))
        hs.wait_until(lambda t=t: server.http.get(f"/indexes/{name}").json()["model_version"]
                      >= t + 1, what=f"round {t + 1}")


def round_parts(seconds: dict[str, float]) -> float:
    """The sum of a record's timed parts (everything but the sums learn and total)."""
    return sum(v for k, v in seconds.items() if k not in ("learn", "total"))


def test_dashboard_draws_every_panel_after_5_rounds(start_server: Any, store_for: Any, hs: Any,
                                                    tmp_path: Path) -> None:
    server = start_server("dash", workers=1, api_key=KEY, api_keys=KEY)
    # Created first and alphabetically first, never fed: not the index the page opens on.
    idle = hs.unique("a-idle")
    server.create_index(idle, 8)
    name = hs.unique("dash")
    feed_rounds(server, name, hs, rounds=5, partitions=2)
    store_for("dash").enqueue(name, {"role": b"train", "features": b"not an array"})
    hs.wait_until(lambda: server.info(name)["dead_letters"] == 1, what="the dead letter")
    records = server.rounds(name)
    assert len(records) == 5
    for rec in records:  # the timed parts add up to the round (commit included)
        s = rec["seconds"]
        assert s["other"] >= 0 and s["load"] >= 0 and s["score"] > 0 and s["commit"] > 0
        assert abs(round_parts(s) - (s["total"] + s["commit"])) < 1e-3, s
        assert sum(rec["partition_items"]) == 300 and len(rec["partition_items"]) == 2

    with Page(tmp_path / "chromium") as page:
        # the key where the page keeps the one it asks for (as if the user had typed it)
        page.before_scripts(f"localStorage.setItem('hashstream-api-key', '{KEY}')")
        page.open(f"{server.url}/dashboard")  # no ?index=: the most recently active one
        page.wait_for("document.body.dataset.ready === '1' && "
                      "+document.getElementById('heat-latest').dataset.points > 0 && "
                      "+document.getElementById('dead-letter-table').dataset.rows > 0",
                      what="every panel drawn")
        drawn = page.evaluate(DRAWN)
        assert page.evaluate("document.getElementById('index-select').value") == name
        assert page.evaluate("[...document.querySelectorAll('#index-table tbody td:first-child')]"
                             ".map((td) => td.textContent)") == [name, idle]
        assert drawn["chart-map"] == 15  # mAP, tie-aware mAP and precision@r2 of 5 rounds
        assert drawn["chart-size"] == 10
        assert drawn["chart-loss"] >= 5 * 4  # several positive loss terms per round
        assert drawn["chart-seconds"] > 5 * 5  # the parts of 5 rounds and their totals
        assert drawn["chart-exemplars"] == 6  # classes 0..5 streamed so far
        assert drawn["chart-bits"] == 16 and drawn["chart-pr"] == 17  # radii 0..16
        assert drawn["chart-partitions"] == 2
        assert drawn["chart-queue"] >= 4  # items and lag sampled at least once, the limit line
        queue = page.evaluate("document.getElementById('chart-queue').data.map((t) => t.name)")
        assert queue == ["items waiting", "oldest waited", "backlog limit (429 at or past)"]
        assert "ingests refused (429)" in page.evaluate(
            "document.getElementById('queue-refusals').textContent")
        assert drawn["heat-latest"] == 36 and drawn["heat-previous"] == 25
        assert drawn["index-table"] == 2 and drawn["worker-table"] == 1
        assert drawn["dead-letter-table"] == 1
        for chart in CHARTS:
            assert drawn[chart] > 0, chart
        # each stack of the seconds chart adds up to its round, as the page computes them
        stacks = page.evaluate("state.rounds.map((r) => [Object.values(roundParts(r.seconds))"
                               ".reduce((a, v) => a + v, 0), roundWall(r.seconds)])")
        assert len(stacks) == 5 and all(abs(a - b) < 1e-6 for a, b in stacks), stacks
        assert "corrupt stream entry" in page.evaluate(
            "document.getElementById('dead-letter-table').textContent")
        assert page.evaluate("document.getElementById('chart-partitions').dataset.points") == "2"

        # a real mouse move over round 5's mAP marker shows its value
        x, y = page.wait_for(LAST_MAP_POINT, what="the mAP markers")
        page.hover(x, y)
        label = page.wait_for("document.querySelector('#chart-map .hoverlayer').textContent",
                              what="a hover label on the mAP chart")
        assert f"{records[-1]['map']:.4f}" in label, label
        page.screenshot(SCREENSHOTS / "dashboard.png")
        assert page.errors() == []
    shot = SCREENSHOTS / "dashboard.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_chart_library_comes_from_the_installed_plotly_package(api: Any) -> None:
    plain = api.http.get("/dashboard/vendor/plotly.min.js",
                         headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "javascript" in plain.headers["content-type"]
    assert re.search(rb"plotly\.js v\d+\.\d+\.\d+", plain.content[:2000])
    with httpx.Client(base_url=api.url) as raw:  # no automatic decoding: see the wire bytes
        req = raw.build_request("GET", "/dashboard/vendor/plotly.min.js",
                                headers={"Accept-Encoding": "gzip"})
        zipped = raw.send(req, stream=True)
        wire = b"".join(zipped.iter_raw())
    assert zipped.headers["content-encoding"] == "gzip" and len(wire) < len(plain.content) / 2
    assert gzip.decompress(wire) == plain.content
    page = api.http.get("/dashboard").text
    external = re.findall(r"""(?:src|href)=["'](?:https?:)?//""", page)
    assert not external and "/dashboard/vendor/plotly.min.js" in page


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
            "seconds": {"v": 0.01, "b": 0.005, "p": 0.05, "learn": 0.07}, "n_items": 2000,
            "bit_balance": rng.random(32).round(3).tolist(),
            "exemplar_histogram": [200] * 10, "ts": 1.7e9 + rnd,
            "pr_curve": {"radius": list(range(33)), "precision": [0.9] * 33,
                         "recall": np.linspace(0, 1, 33).tolist()}}))
    pipe.set(big.version, 1000)
    pipe.execute()
    with Page(tmp_path / "chromium") as page:
        page.open(f"{server.url}/dashboard?index={names[0]}")
        page.wait_for("document.body.dataset.ready === '1' && "
                      "+document.getElementById('chart-map').dataset.points > 0")
        drawn = page.evaluate(DRAWN)
        assert drawn["chart-map"] == 2000 and drawn["chart-size"] == 2000
        assert drawn["index-table"] == 50
        # records written before every part was timed: "other" fills each stack to "learn"
        other = page.evaluate("roundParts(state.rounds[0].seconds).other")
        assert abs(other - (0.07 - 0.065)) < 1e-9
        assert page.errors() == []


def test_metrics_parse_with_prometheus_parser(start_server: Any, hs: Any) -> None:
    server = start_server("metrics", workers=1)
    name = hs.unique("met")
    feed_rounds(server, name, hs, rounds=2)
    server.http.get(f"/indexes/{name}/search", params={"item": 3})
    waiting = hs.unique("wait")  # 5 rows under 16 bits: too few for a round, so they wait
    server.create_index(waiting, 24)
    x, y = hs.Clusters(seed=1, dim=24).sample(5)
    server.ingest(waiting, hs.json_chunk(x, y))

    def families() -> dict[str, Any]:
        text = server.http.get("/metrics").text
        return {f.name: f for f in text_string_to_metric_families(text)}

    def by_index(family: Any) -> dict[str, float]:
        return {s.labels["index"]: s.value for s in family.samples}

    fams = hs.wait_until(lambda: (f := families()) and by_index(
        f["hashstream_queue_lag_seconds"]).get(waiting, 0) > 0 and f, what="a queue lag")
    requests = fams["hashstream_http_requests"].samples
    assert any(s.labels["route"] == "/indexes/{name}/ingest" and s.labels["status"] == "202"
               and s.value >= 3 for s in requests)
    latency = [s for s in fams["hashstream_http_request_seconds"].samples
               if s.name.endswith("_count") and s.labels["route"] == "/indexes/{name}/search"]
    assert latency and latency[0].value >= 1
    gauges = {f: by_index(fams[f]) for f in (
        "hashstream_rounds", "hashstream_database_items", "hashstream_queue_depth",
        "hashstream_round_seconds", "hashstream_round_map", "hashstream_round_precision_r2",
        "hashstream_queue_lag_seconds", "hashstream_replica_version",
        "hashstream_replica_refresh_seconds")}
    last = server.rounds(name)[-1]
    assert gauges["hashstream_rounds"][name] == 2
    assert gauges["hashstream_database_items"][name] == 600
    assert gauges["hashstream_queue_depth"] == {name: 0, waiting: 1}
    assert gauges["hashstream_queue_lag_seconds"][name] == 0
    assert 0 < gauges["hashstream_queue_lag_seconds"][waiting] < 600
    seconds = last["seconds"]
    assert gauges["hashstream_round_seconds"][name] == seconds["total"] + seconds["commit"]
    assert gauges["hashstream_round_map"] == {name: last["map"]}  # none for the waiting index
    assert gauges["hashstream_round_precision_r2"] == {name: last["precision_r2"]}
    assert gauges["hashstream_replica_version"] == {name: 2}  # the search loaded version 2
    assert gauges["hashstream_replica_refresh_seconds"][name] > 0
    assert [s.value for s in fams["hashstream_workers_alive"].samples] == [1]
