"""The monitoring files shipped in deploy/: Prometheus config and alert rules (checked and unit-tested
with Debian's ``promtool``), the Grafana provisioning and dashboard, and that every metric they query is
one the gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "portal.json"


# The gateway's metrics (name -> kind). Histograms are queried through their _bucket/_sum/_count series.
def _exported_metrics() -> dict[str, str]:
    """Every metric portal exports, by exposition name, read from the real registry."""
    import portal.ops.metrics  # noqa: F401  (defines the metrics)

    found = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in REGISTRY.collect()
        if family.name.startswith("portal_")
    }
    found["portal_budget_remaining"] = "gauge"  # collected per scrape from the database
    return found


EXPORTED_METRICS = _exported_metrics()
CONTRACT = {  # the names the dashboard and the alert rules were written against
    "portal_requests_total": "counter",
    "portal_request_duration_seconds": "histogram",
    "portal_time_to_first_token_seconds": "histogram",
    "portal_gateway_overhead_seconds": "histogram",
    "portal_client_requests_total": "counter",
    "portal_client_errors_total": "counter",
    "portal_client_tokens_total": "counter",
    "portal_client_cost_usd_total": "counter",
    "portal_limit_denials_total": "counter",
    "portal_budget_remaining": "gauge",
    "portal_cache_hits_total": "counter",
    "portal_cache_misses_total": "counter",
    "portal_writer_queue_depth": "gauge",
    "portal_writer_flushes_total": "counter",
    "portal_writer_flush_errors_total": "counter",
    "portal_upstream_errors_total": "counter",
}
PROMETHEUS_OWN = {"up"}
EXPECTED_ALERTS = {
    "HighClientCost",
    "ClientErrorSpike",
    "PortalHighErrorRate",
    "PortalHighLatencyP95",
    "PortalInstanceDown",
    "BudgetNearlyExhausted",
    "SpendWriterBacklog",
}
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# A series selector: a name followed by a label matcher or a range.
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\{\[]")
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool (package ``prometheus``, installed by tests/bootstrap.sh)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run tests/bootstrap.sh (Debian package prometheus)"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (``name{...}`` or ``name[...]``)."""
    return {m for m in _SELECTOR.findall(expr) if m not in _PROMQL_WORDS}


def exported(name: str) -> bool:
    """Whether ``name`` is a series the gateway (or Prometheus itself) produces."""
    if name in EXPORTED_METRICS or name in PROMETHEUS_OWN:
        return True
    for suffix in _HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and EXPORTED_METRICS.get(base) == "histogram":
            return True
    return False


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expression) of every query in the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])
    ]


def as_plain_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by values Prometheus accepts."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$tenant", ".*")
        .replace("$model", ".*")
    )


def test_the_metric_name_helpers_see_what_they_should() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(portal_request_duration_seconds_bucket{m="x"}[5m])))'
    assert metric_names(expr) == {"portal_request_duration_seconds_bucket"}
    assert exported("portal_request_duration_seconds_bucket")
    assert not exported("portal_requests_total_bucket")
    assert not exported("coo_llm_client_cost_total")


def test_prometheus_config_is_valid_and_scrapes_both_instances() -> None:
    checked = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    portal_job = next(job for job in config["scrape_configs"] if job["job_name"] == "portal")
    targets = portal_job["static_configs"][0]["targets"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    admin_port = compose["services"]["portal-1"]["environment"]["PORTAL_ADMIN_LISTEN"].rsplit(":", 1)[1]
    assert sorted(targets) == [f"portal-1:{admin_port}", f"portal-2:{admin_port}"]
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_are_valid_and_complete() -> None:
    checked = promtool("check", "rules", PROMETHEUS / "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_alert_rules_fire_on_their_scenarios() -> None:
    """promtool unit tests (tests/deploy/alerts_test.yml): each alert fires when it should, and only then."""
    result = promtool("test", "rules", Path(__file__).with_name("alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = set(re.findall(r"alertname: (\w+)", Path(__file__).with_name("alerts_test.yml").read_text()))
    assert tested >= EXPECTED_ALERTS


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query, as a recording rule, passes ``promtool check rules`` (PromQL parser)."""
    targets = dashboard_targets()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_plain_promql(expr)}
        for i, (_, expr) in enumerate(targets)
    ]
    file = tmp_path / "dashboard_rules.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_dashboard_and_rules_query_only_exported_metrics() -> None:
    expressions = [expr for _, expr in dashboard_targets()] + [rule["expr"] for rule in alert_rules()]
    used = set().union(*(metric_names(e) for e in expressions))
    unknown = sorted(name for name in used if not exported(name))
    assert not unknown, f"queried but not exported by the gateway: {unknown}"
    assert len(used) >= 12


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("spend per tenant", r"sum by \(tenant\) \(rate\(portal_client_cost_usd_total"),
        ("requests per model", r"sum by \(model\) \(rate\(portal_requests_total"),
        ("requests per tenant", r"sum by \(tenant\) \(rate\(portal_client_requests_total"),
        ("errors per model", r'portal_requests_total\{[^}]*status=~"5\.\."'),
        ("errors per tenant", r"sum by \(tenant\) \(rate\(portal_client_errors_total"),
        ("latency p50", r"histogram_quantile\(0\.5, sum by \(le, model\) \(rate\(portal_request_duration"),
        ("latency p95", r"histogram_quantile\(0\.95, sum by \(le, model\) \(rate\(portal_request_duration"),
        ("ttft p50", r"histogram_quantile\(0\.5, sum by \(le, model\) \(rate\(portal_time_to_first_token"),
        ("ttft p95", r"histogram_quantile\(0\.95, sum by \(le, model\) \(rate\(portal_time_to_first_token"),
    ],
)
def test_dashboard_shows(what: str, pattern: str) -> None:
    assert any(re.search(pattern, expr) for _, expr in dashboard_targets()), what


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"]
    assert board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    used = {p["datasource"]["uid"] for p in board["panels"] if "datasource" in p}
    used |= {v["datasource"]["uid"] for v in board["templating"]["list"]}
    assert used == {source["uid"]}
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/portal.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    grafana = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["grafana"]
    assert f"./grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_the_registry_exports_every_metric_of_the_contract() -> None:
    missing = {name: kind for name, kind in CONTRACT.items() if EXPORTED_METRICS.get(name) != kind}
    assert missing == {}
