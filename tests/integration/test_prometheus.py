"""A real Prometheus server scrapes the running services; the key series exist and move."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from services.bench.deployment import Deployment
from services.samples import photo_bytes
from services.shared.metrics import SIGNALS
from tests.debian import debian_program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _meta(kind: str, values: dict[str, str]) -> dict[str, str]:
    """Pod labels or annotations as Kubernetes discovery names them for relabelling."""
    return {
        f"__meta_kubernetes_pod_{kind}_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
        for k, v in values.items()
    }


def pod(name: str, port: int) -> dict:
    """The target Kubernetes discovery reports for the service's pod of deploy/k8s."""
    (deployment,) = [
        d
        for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{name}.yaml").read_text())
        if d["kind"] == "Deployment"
    ]
    template = deployment["spec"]["template"]["metadata"]
    # The port the service listens on here, instead of its production port.
    annotations = {**template["annotations"], "prometheus.io/port": str(port)}
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            **_meta("label", template["labels"]),
            **_meta("annotation", annotations),
            "__meta_kubernetes_pod_name": f"{deployment['metadata']['name']}-0",
            "__meta_kubernetes_namespace": "eraser",
        },
    }


class Prometheus:
    """The shipped Kubernetes scrape config and rules, with pod discovery read from a file."""

    def __init__(self, program: Path, folder: Path, targets: dict[str, int]) -> None:
        shutil.copy(ALERTS, folder / "alerts.yml")
        config = yaml.safe_load((DEPLOY / "prometheus" / "kubernetes.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        (job,) = config["scrape_configs"]
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(folder / "pods.json")]}]
        (folder / "pods.json").write_text(json.dumps([pod(n, p) for n, p in targets.items()]))
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._process = subprocess.Popen(
            [
                str(program),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as answer:
            return json.loads(answer.read())["data"]

    def value(self, expression: str) -> float:
        result = self.api("query", query=expression)["result"]
        return sum(float(sample["value"][1]) for sample in result)

    def eventually(self, expression: str, predicate, timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.value(expression)
            if predicate(value) or time.monotonic() > deadline:
                return value
            time.sleep(0.5)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


@pytest.fixture(scope="module")
def prometheus_program():
    program = debian_program("prometheus", "prometheus")
    if program is None:
        pytest.skip("Prometheus unavailable: the Debian package 'prometheus' could not be fetched")
    return program


def test_prometheus_scrapes_every_service_and_the_series_move(broker, tmp_path, prometheus_program):
    ports = {name: _free_port() for name in ("ingest", "matcher", "actions")}
    env = {f"ERASER_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()}
    eraser = Deployment(broker.bootstrap_servers, tmp_path, banks={"kids": {}}, env=env)
    os.makedirs(tmp_path / "prometheus")
    prometheus = Prometheus(prometheus_program, tmp_path / "prometheus", ports)
    try:
        eraser.register("kids", {"coffee": photo_bytes("coffee.png")})
        eraser.pipeline.start()
        jobs = 'up{job=~"eraser-(ingest|matcher|actions)",namespace="eraser"}'
        assert prometheus.eventually(f"sum({jobs})", lambda v: v == 3) == 3
        assert prometheus.value("sum(eraser_ingest_events_consumed_total)") == 0
        # Before any match, every signal of the configured bank has its series.
        signals = len(SIGNALS)
        assert prometheus.value('count(eraser_matcher_matches_total{bank="kids"})') == signals

        uploads = [eraser.upload(f"m-{n}", photo_bytes("coffee.png")) for n in range(3)]
        uploads += [eraser.upload(f"c-{n}", photo_bytes("rocket.jpg")) for n in range(2)]
        uploads.append(eraser.upload("junk", b"not an image"))
        eraser.wait_for_verdicts(uploads)

        moved = {
            "sum(eraser_ingest_events_consumed_total)": 6,
            'sum(eraser_ingest_events_consumed_total{outcome="dead_lettered"})': 1,
            'sum(eraser_ingest_dead_letters_total{reason="MediaUndecodableError"})': 1,
            'sum(eraser_ingest_fetched_bytes_total{source="inline"})': 1,
            'sum(eraser_matcher_verdicts_total{verdict="match"})': 3,
            'sum(eraser_matcher_verdicts_total{verdict="clean"})': 2,
            'sum(eraser_ingest_verdicts_total{verdict="error"})': 1,
            'sum(eraser_matcher_matches_total{bank="kids",signal="sha256"})': 3,
            "sum(eraser_matcher_upload_to_verdict_seconds_count)": 5,
            'sum(eraser_actions_actions_total{action="remove"})': 3,
            'sum(eraser_matcher_index_entries{signal="pdq"})': 1,
            'sum(eraser_ingest_stage_seconds_count{stage="decode"})': 5,
        }
        for expression, at_least in moved.items():
            assert prometheus.eventually(expression, lambda v, n=at_least: v >= n) >= at_least, (
                expression
            )
        # One lag series per input partition (the deployment's topics have 3), each named.
        lag = 'count(eraser_ingest_consumer_lag_messages{topic=~".+[.]uploads",partition=~"[0-2]"})'
        assert prometheus.eventually(lag, lambda v: v == 3) == 3
        services = (
            'count by (service) ({__name__=~"eraser_(ingest|matcher|actions)_batch_seconds_count"})'
        )
        assert {
            r["metric"]["service"] for r in prometheus.api("query", query=services)["result"]
        } == {
            "ingest",
            "matcher",
            "actions",
        }
        for port in ports.values():
            for probe in ("healthz", "readyz"):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{probe}", timeout=5) as r:
                    assert r.status == 200
        # In step with the registry: well inside one poll of the follower, not growing.
        assert prometheus.value("max(eraser_matcher_index_behind_seconds)") < 5

        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert {r["name"] for r in rules} >= {
            "EraserServiceDown",
            "EraserServiceAbsent",
            "EraserScrapeJobsUnwatched",
            "EraserNoVerdicts",
            "EraserIndexStale",
        }
        assert all(r["health"] == "ok" for r in rules), rules
        down = (
            'ALERTS{alertname=~"EraserServiceDown|EraserServiceAbsent|EraserScrapeJobsUnwatched"}'
        )
        assert prometheus.eventually(f"count({down})", lambda v: v == 0) == 0
    finally:
        prometheus.stop()
        eraser.close()
