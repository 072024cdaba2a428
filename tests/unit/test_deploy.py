"""deploy/ stays valid: Kubernetes schemas, promtool, and dashboards that only use real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.cli import _parser
from services.shared.metrics import ActionsMetrics, IngestMetrics, MatcherMetrics
from tests.debian import debian_program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def exported_metric_names() -> set[str]:
    """Every series name the three services can export (with histogram and counter suffixes)."""
    names = set()
    for container in (IngestMetrics, MatcherMetrics, ActionsMetrics):
        for metric in container(CollectorRegistry()).registry.collect():
            names |= {sample.name for sample in metric.samples} | {metric.name}
            if metric.type == "counter":
                names.add(f"{metric.name}_total")
            if metric.type == "histogram":
                names |= {f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


def referenced_metric_names(text: str) -> set[str]:
    return set(re.findall(r"\beraser_[a-z_]+\b", text)) - {"eraser_"}


@pytest.mark.parametrize(
    "path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_kubernetes_manifests_validate_against_the_schemas(path):
    documents = [d for d in yaml.safe_load_all((K8S / path).read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_the_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_every_service_command_in_deploy_is_an_eraser_command():
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    used = {
        s["command"][0]
        for s in compose["services"].values()
        if "command" in s and s.get("image", "").startswith("eraser")
    }
    for path in K8S.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            spec = (document or {}).get("spec", {}).get("template", {}).get("spec", {})
            used |= {c["args"][0] for c in spec.get("containers", []) if "args" in c}
    assert used == {"topics", "ingest", "matcher", "actions", "admin"}
    assert used <= commands


def test_dashboard_and_alerts_use_only_metrics_the_services_export():
    exported = exported_metric_names()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "eraser.json").read_text())
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for source in (expressions, alerts):
        referenced = referenced_metric_names(source)
        assert referenced, "the expressions reference eraser metrics"
        assert referenced - exported == set()
    regex_families = re.findall(r"eraser_\(([a-z|]+)\)_([a-z_]+)", alerts)
    for services, suffix in regex_families:
        for service in services.split("|"):
            assert f"eraser_{service}_{suffix}" in exported


@pytest.fixture(scope="module")
def promtool():
    program = debian_program("prometheus", "promtool")
    if program is None:
        pytest.skip("promtool unavailable: the Debian package 'prometheus' could not be fetched")
    return program


def test_promtool_accepts_the_prometheus_config(promtool):
    result = subprocess.run(
        [str(promtool), "check", "config", "prometheus.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules(promtool):
    result = subprocess.run(
        [str(promtool), "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 rules found" in result.stdout
