"""The `monitoring` profile of docker-compose.yml: the files it mounts exist and point at each
other (compose service → Prometheus scrape target → Grafana data source → dashboard), and every
metric the Grafana dashboard queries is one a live service's /metrics exports. No Docker engine
is needed: the files are read, the exposition comes from a real `hashstream serve`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hashstream.json"
METRIC = re.compile(r"\bhashstream_[a-z0-9_]+\b")
# PromQL words that are not metric names
NOT_METRICS = {"le", "index", "route", "status", "instance"}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repository file of every bind mount (``./…:/path[:ro]``)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else str(query))
    return exprs


def test_monitoring_profile_mounts_files_that_exist_and_agree() -> None:
    services = compose()["services"]
    monitoring = {name for name, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    assert all("profiles" not in services[s] for s in ("redis", "api", "worker"))

    prometheus = services["prometheus"]
    prom_files = mounts(prometheus)
    assert prom_files and all(path.is_file() for path in prom_files.values()), prom_files
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = prom_files[config_arg.split("=", 1)[1]]
    assert config_path == DEPLOY / "prometheus.yml"
    scrape = yaml.safe_load(config_path.read_text())["scrape_configs"]
    [job] = scrape
    assert job["metrics_path"] == "/metrics"
    [sd] = job["dns_sd_configs"]
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert sd["names"] == ["api"] and str(sd["port"]) == api_port  # the api service's port
    # the scraper's key: a secret compose defines and mounts where the config reads it
    [secret] = prometheus["secrets"]
    assert secret in compose()["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"

    grafana = services["grafana"]
    graf = mounts(grafana)
    assert graf and all(path.is_dir() for path in graf.values()), graf
    provisioning = graf["/etc/grafana/provisioning"]
    [source] = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    port = next(p for p in prometheus["ports"]).split(":")[-1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{port}"
    [provider] = yaml.safe_load(
        (provisioning / "dashboards" / "hashstream.yml").read_text())["providers"]
    assert graf[provider["options"]["path"]] == DASHBOARD.parent  # the folder Grafana reads
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) and len(panels) >= 10
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["gridPos"]["w"] > 0, panel["title"]
        for target in [panel, *panel["targets"]]:  # every query goes to the provisioned source
            assert target["datasource"] == {"type": "prometheus", "uid": source["uid"]}


def test_grafana_queries_only_metrics_the_service_exports(start_server: Any, hs: Any) -> None:
    server = start_server("monitoring", workers=1)
    name = hs.unique("mon")
    data = hs.Clusters(seed=3, dim=16, n_classes=4)
    server.create_index(name, 16)
    x, y = data.sample(60)
    server.ingest(name, hs.json_chunk(x, y, role="query"))
    x, y = data.sample(200)
    server.ingest(name, hs.json_chunk(x, y))
    server.wait_idle(name)
    server.client.search(name, item=0, k=3)  # loads a replica: its gauges appear
    server.http.get("/indexes/none-such")  # a 4xx for the error panel's series
    text = server.http.get("/metrics").text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    used = {m for expr in queries(json.loads(DASHBOARD.read_text()))
            for m in METRIC.findall(expr)} - NOT_METRICS
    assert len(used) >= 12, used
    assert used <= exported, f"the dashboard queries series /metrics lacks: {used - exported}"
    for wanted in ("hashstream_round_map", "hashstream_round_precision_r2",
                   "hashstream_queue_lag_seconds", "hashstream_replica_version",
                   "hashstream_replica_refresh_seconds"):
        assert wanted in used, f"no panel shows {wanted}"
