"""The monitoring files agree with the code and the compose file: every metric the Grafana
dashboard queries exists, and Prometheus scrapes the services and ports the app listens on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from orchestrator.adapters.observability import metrics
from tests.unit.test_compose_file import ROOT, _environment, load_compose, services_of

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "trade-execution.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

# Temporal SDK runtime metrics the dashboard uses. All but the last were read from a real
# worker's endpoint (tests/integration/test_webhook_end_to_end.py checks they are served);
# activity_execution_failed is documented by the SDK and appears after the first failure.
SDK_METRICS = frozenset(
    {
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_activity_execution_latency_bucket",
        "temporal_worker_task_slots_available",
    }
)


def dashboard_expressions(path: Path = DASHBOARD) -> list[str]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def queried_metrics(prefix: str) -> set[str]:
    pattern = re.compile(rf"\b{prefix}[a-z0-9_]+")
    return {name for expr in dashboard_expressions() for name in pattern.findall(expr)}


def business_sample_names() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.collect():
                names.update(sample.name for sample in family.samples)
                # Labelled metrics have no samples until a label is used.
                if family.type == "counter":
                    names.add(f"{family.name}_total")
                if family.type == "histogram":
                    names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


def test_every_business_metric_the_dashboard_queries_is_defined() -> None:
    queried = queried_metrics("teo_")
    assert queried, "the dashboard queries no business metric"
    assert queried - business_sample_names() == set()


def test_every_sdk_metric_the_dashboard_queries_is_one_the_worker_serves() -> None:
    assert queried_metrics("temporal_") <= SDK_METRICS


def test_every_business_metric_is_on_the_dashboard() -> None:
    families = {
        value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
    }
    queried = queried_metrics("teo_")
    missing = {f for f in families if not any(name.startswith(f) for name in queried)}
    assert missing == set()


def test_dashboard_panels_use_the_provisioned_data_source() -> None:
    uid = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {uid}


@pytest.mark.parametrize(
    ("job", "service", "port_variable"),
    [
        ("teo-worker", "worker", "TEO_METRICS_PORT"),
        ("teo-worker-sdk", "worker", "TEO_TEMPORAL_METRICS_PORT"),
        ("teo-webhook", "webhook", "TEO_WEBHOOK_PORT"),
    ],
)
def test_prometheus_scrapes_the_ports_the_services_listen_on(
    job: str, service: str, port_variable: str
) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {entry["job_name"]: entry for entry in config["scrape_configs"]}
    services = services_of(load_compose())
    env = _environment(services[service])
    (discovery,) = jobs[job]["dns_sd_configs"]

    assert discovery["names"] == [service]
    assert str(discovery["port"]) == env[port_variable]
    host_variable = "TEO_WEBHOOK_HOST" if service == "webhook" else "TEO_METRICS_HOST"
    assert env[host_variable] == "0.0.0.0"
