"""deploy/ stays valid: Kubernetes schemas, promtool, and dashboards that only use real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.cli import _parser
from services.review.metrics import ReviewMetrics
from services.shared.metrics import ActionsMetrics, IngestMetrics, MatcherMetrics
from tests.debian import debian_program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def exported_metric_names() -> set[str]:
    """Every series name the services and the review console can export (with suffixes)."""
    names = set()
    review = ReviewMetrics(CollectorRegistry(), clock=lambda: datetime.now(UTC))
    containers = [c(CollectorRegistry()) for c in (IngestMetrics, MatcherMetrics, ActionsMetrics)]
    for container in [*containers, review]:
        for metric in container.registry.collect():
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


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "eraser.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_and_alerts_use_only_metrics_the_services_export():
    exported = exported_metric_names()
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for source in (" ".join(dashboard_expressions()), alerts):
        referenced = referenced_metric_names(source)
        assert referenced, "the expressions reference eraser metrics"
        assert referenced - exported == set()
        regex_families = re.findall(r"eraser_\(([a-z|]+)\)_([a-z_]+)", source)
        assert regex_families
        for services, suffix in regex_families:
            for service in services.split("|"):
                assert f"eraser_{service}_{suffix}" in exported


def test_the_dashboard_shows_lag_per_topic_and_partition():
    assert any(
        "consumer_lag_messages" in expr and "by (topic, partition)" in expr
        for expr in dashboard_expressions()
    )


def test_only_service_down_depends_on_scrape_job_names():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]
    by_job = {r["alert"] for r in rules["rules"] if "job" in r["expr"]}
    assert by_job == {"EraserServiceDown", "EraserScrapeJobsUnwatched"}
    assert not any("job" in expr for expr in dashboard_expressions())


@pytest.fixture(scope="module")
def promtool():
    program = debian_program("prometheus", "promtool")
    if program is None:
        pytest.skip("promtool unavailable: the Debian package 'prometheus' could not be fetched")
    return program


def check_config(promtool, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), "check", "config", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )


def test_promtool_accepts_the_compose_prometheus_config(promtool):
    result = check_config(promtool, DEPLOY / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_kubernetes_prometheus_config(promtool, tmp_path):
    config = DEPLOY / "prometheus" / "kubernetes.yml"
    result = check_config(promtool, config)
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds Prometheus without Kubernetes discovery: check everything else (the
        # relabelling, the rule files) with the discovery block swapped for a static target.
        document = yaml.safe_load(config.read_text())
        for job in document["scrape_configs"]:
            assert job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["pod:9101"]}]
        shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "kubernetes.yml").write_text(yaml.safe_dump(document))
        result = check_config(promtool, tmp_path / "kubernetes.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules(promtool):
    result = subprocess.run(
        [str(promtool), "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 rules found" in result.stdout


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """An input series scraped by a job that owes nothing to eraser's names (annotation-based)."""
    labels = {"job": "kubernetes-pods", "instance": "10.0.0.1:9101", **labels}
    inside = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{inside}}}", "values": values}


def consumed(service: str, values: str = "0+10x60") -> dict[str, str]:
    return series(f"eraser_{service}_events_consumed_total", values, service=service, outcome="ok")


def alert(name: str, at: str, *expected: dict) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(expected)}


def fired(severity: str, summary: str, runbook: str, **labels: str) -> dict:
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {"summary": summary, "runbook": f"docs/operations.md#{runbook}"},
    }


ALERT_CASES = {
    "lag is grouped by service, not by the job that scraped it": (
        [
            consumed("ingest"),
            consumed("matcher"),
            consumed("actions"),
            series(
                "eraser_ingest_consumer_lag_messages",
                "1000+100x40",
                service="ingest",
                topic="eraser.uploads",
                partition="0",
            ),
            series(
                "eraser_matcher_consumer_lag_messages",
                "5000x40",
                instance="10.0.0.2:9102",
                service="matcher",
                topic="eraser.hashes",
                partition="0",
            ),
        ],
        [
            alert(
                "EraserConsumerLagGrowing",
                "30m",
                fired(
                    "page",
                    "ingest is 4000 messages behind and falling further behind",
                    "eraserconsumerlaggrowing",
                    service="ingest",
                ),
            )
        ],
    ),
    "a service no process of which is scraped is absent": (
        [consumed("ingest"), consumed("actions")],
        [
            alert(
                "EraserServiceAbsent",
                "10m",
                fired(
                    "page",
                    "No matcher process has been scraped for 5 minutes",
                    "eraserserviceabsent",
                    service="matcher",
                ),
            )
        ],
    ),
    "scraping under other job names is reported": (
        [consumed("ingest"), consumed("matcher"), consumed("actions")],
        [
            alert(
                "EraserScrapeJobsUnwatched",
                "20m",
                fired(
                    "ticket",
                    "eraser is scraped under job names EraserServiceDown does not watch",
                    "eraserscrapejobsunwatched",
                ),
            )
        ],
    ),
    "a target of a watched job that stops answering is down": (
        [
            consumed("ingest", "0+10x60"),
            {"series": 'up{job="eraser-ingest",instance="10.0.0.1:9101"}', "values": "1 1 0x20"},
        ],
        [
            alert("EraserScrapeJobsUnwatched", "20m"),
            alert(
                "EraserServiceDown",
                "10m",
                fired(
                    "page",
                    "eraser-ingest on 10.0.0.1:9101 is not answering scrapes",
                    "eraserservicedown",
                    job="eraser-ingest",
                    instance="10.0.0.1:9101",
                ),
            ),
        ],
    ),
    "ingest's error verdicts count as verdicts": (
        [
            consumed("ingest"),
            series("eraser_matcher_verdicts_total", "0x30", service="matcher", verdict="clean"),
            series("eraser_ingest_verdicts_total", "0+10x30", service="ingest", verdict="error"),
        ],
        [alert("EraserNoVerdicts", "20m")],
    ),
    "uploads without verdicts are reported": (
        [
            consumed("ingest"),
            series("eraser_matcher_verdicts_total", "0x30", service="matcher", verdict="clean"),
            series("eraser_ingest_verdicts_total", "0x30", service="ingest", verdict="error"),
        ],
        [
            alert(
                "EraserNoVerdicts",
                "20m",
                fired(
                    "page",
                    "Uploads are arriving but no verdicts are being issued",
                    "erasernoverdicts",
                ),
            )
        ],
    ),
    "a review backlog that keeps growing is reported": (
        [series("eraser_review_backlog_items", "10+1x150", service="review", queue="pdq")],
        [
            alert("EraserReviewBacklogGrowing", "50m"),
            alert(
                "EraserReviewBacklogGrowing",
                "2h",
                fired(
                    "ticket",
                    "130 review items are waiting and the backlog keeps growing",
                    "eraserreviewbackloggrowing",
                ),
            ),
        ],
    ),
    "an index that stops following the registry goes stale": (
        [series("eraser_matcher_index_behind_seconds", "0+60x10", service="matcher")],
        [
            alert(
                "EraserIndexStale",
                "8m",
                fired(
                    "page",
                    "Matcher 10.0.0.1:9101 is 8m 0s behind the registry",
                    "eraserindexstale",
                    instance="10.0.0.1:9101",
                ),
            )
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(ALERT_CASES))
def test_the_alert_rules_on_synthetic_series(promtool, tmp_path, case):
    inputs, expectations = ALERT_CASES[case]
    tests = {
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": expectations}],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [str(promtool), "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
