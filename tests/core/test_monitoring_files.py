"""The monitoring files in deploy/ stay valid and in step with hubbub.metrics.

Alert rules and dashboard queries name metrics as strings; a renamed or removed metric
would leave an alert that never fires and a panel that stays empty, silently. These tests
turn such a rename into a failure, and run the real `promtool` on the Prometheus files
(`make promtool` installs it; without it they skip, or fail when CI is set).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from support.needs import executable

from hubbub import __version__, metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hubbub.json"
OPERATIONS = ROOT / "docs" / "operations.md"

METRIC_NAME = re.compile(r"\bhubbub_[a-zA-Z0-9_]+")

# Every alert the operations guide documents; each needs a severity and annotations.
EXPECTED_ALERTS = {
    "HubbubNodeDown",
    "HubbubNotReady",
    "HubbubAckLatencyHigh",
    "HubbubFanoutLatencyHigh",
    "HubbubErrorRate",
    "HubbubHttpServerErrors",
    "HubbubBackendErrors",
    "HubbubSlowConsumers",
    "HubbubGapFills",
    "HubbubFanoutStalled",
    "HubbubWorkerDown",
    "HubbubWorkerMissing",
    "HubbubWorkerLag",
    "HubbubWorkerStalled",
}

# What the dashboard must show, by panel title.
EXPECTED_PANELS = {
    "Ready state",
    "Connections per node",
    "Rooms per node",
    "Frames in / out",
    "Acks",
    "Ack latency p50 / p99",
    "Fan-out latency p99",
    "Errors by code",
    "Backend errors",
    "Gap fills",
    "Fan-out canary",
    "Slow clients cut off",
    "Worker lag",
    "Worker throughput",
}


def _collectors() -> list[MetricWrapperBase]:
    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


def exposed_series_names() -> set[str]:
    """Every sample name hubbub.metrics can put on /metrics (e.g. `x_total`, `x_bucket`)."""
    names: set[str] = set()
    for collector in _collectors():
        (family,) = collector.describe()
        if isinstance(collector, Counter):
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif isinstance(collector, Histogram):
            suffixes = ("_bucket", "_count", "_sum", "_created")
            names |= {family.name + suffix for suffix in suffixes}
        else:
            assert isinstance(collector, Gauge), collector
            names.add(family.name)
    return names


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def _names_in(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


# --- the metrics named in deploy/ exist -----------------------------------------------------------


def test_every_metric_the_alert_rules_use_is_defined_in_hubbub_metrics() -> None:
    used = _names_in([rule["expr"] for rule in alert_rules()])
    assert len(used) >= 10, used  # the extraction works: most metrics are alerted on
    unknown = sorted(used - exposed_series_names())
    assert not unknown, f"alerts.yml names metrics hubbub.metrics does not define: {unknown}"


def test_every_metric_the_dashboard_queries_is_defined_in_hubbub_metrics() -> None:
    used = _names_in(dashboard_exprs())
    assert len(used) >= 15, used
    unknown = sorted(used - exposed_series_names())
    assert not unknown, f"hubbub.json queries metrics hubbub.metrics does not define: {unknown}"


def test_every_metric_of_hubbub_metrics_is_on_the_dashboard() -> None:
    """A metric nobody can see is a metric nobody reads: each family has a panel."""
    used = _names_in(dashboard_exprs())
    for collector in _collectors():
        (family,) = collector.describe()
        assert any(name.startswith(family.name) for name in used), family.name


def test_every_metric_of_hubbub_metrics_is_explained_in_the_operations_guide() -> None:
    guide = OPERATIONS.read_text()
    for collector in _collectors():
        (family,) = collector.describe()
        suffix = "_total" if isinstance(collector, Counter) else ""
        assert f"`{family.name}{suffix}`" in guide, family.name


def test_build_info_names_version_and_node() -> None:
    metrics.set_build_info("monitoring-test-node")
    text = generate_latest().decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "hubbub_build_info"]
    samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    key = (("node", "monitoring-test-node"), ("version", __version__))
    assert samples[key] == 1.0, samples


# --- alert rules ----------------------------------------------------------------------------------


def test_alert_rules_are_the_documented_set_with_severity_and_annotations() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), names
    assert set(names) == EXPECTED_ALERTS
    guide = OPERATIONS.read_text()
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule
        anchor = annotations["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower(), rule
        assert f"### {rule['alert']}" in guide, f"{rule['alert']} is not in docs/operations.md"


def promtool() -> str:
    """The promtool executable (PATH, or the venv where `make promtool` puts it)."""
    return executable("promtool", "make promtool", extra_path=str(Path(sys.executable).parent))


def run_promtool(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_accepts_the_alert_rules() -> None:
    output = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in output, output


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    output = run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "is valid prometheus config file syntax" in output, output


def test_alerts_fire_and_stay_quiet_as_their_promtool_unit_tests_say() -> None:
    """deploy/prometheus/alerts_test.yml: synthetic series in, the expected alerts out."""
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text()))
    assert tested == EXPECTED_ALERTS, EXPECTED_ALERTS ^ tested
    output = run_promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert "SUCCESS" in output, output


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_has_the_panels_and_variables_operators_need() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    titles = [p["title"] for p in dashboard_panels() if p["type"] != "row"]
    assert len(titles) == len(set(titles)), titles
    assert set(titles) >= EXPECTED_PANELS, EXPECTED_PANELS - set(titles)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), ids


def test_dashboard_panels_query_the_datasource_variable_and_filter_nodes() -> None:
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            expr = target["expr"]
            if 'job="hubbub"' in expr and "instance=" not in expr and "sum(" not in expr:
                raise AssertionError(f"{panel['title']}: a per-node query ignores $instance")


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard_panels():
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, is valid PromQL."""
    exprs = [
        expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        for expr in dashboard_exprs()
    ]
    rules = [{"record": f"hubbub_dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(exprs)} rules found" in output, output
