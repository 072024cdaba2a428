import socket
import urllib.error
import urllib.request

import pytest
from pydantic import ValidationError

from services.shared.config import IngestSettings, KafkaSettings
from services.shared.health import Health, serve
from services.shared.metrics import IngestMetrics, MatcherMetrics


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


@pytest.fixture
def endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = Clock()
    health = Health(liveness_timeout_s=120, connected_within_s=30, clock=clock)
    metrics = IngestMetrics()
    server = serve(port, metrics.exported, health)
    yield f"http://127.0.0.1:{port}", health, metrics, clock
    server.shutdown()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readiness_needs_the_loop_the_brokers_and_every_check_and_says_what_is_missing(endpoint):
    url, health, _, clock = endpoint
    index_in_step = False
    health.require("the index is not in step with the registry", lambda: index_in_step)
    assert get(f"{url}/readyz") == (
        503,
        "starting; the brokers have not answered yet; the index is not in step with the registry"
        "\nassigned: none",
    )
    health.running()
    health.broker_answered()
    health.assigned([("eraser.hashes", 2), ("eraser.hashes", 0)])
    assert get(f"{url}/readyz") == (
        503,
        "the index is not in step with the registry\nassigned: eraser.hashes[0,2]",
    )
    index_in_step = True
    assert get(f"{url}/readyz") == (200, "ready\nassigned: eraser.hashes[0,2]")
    clock.now += 31
    assert get(f"{url}/readyz") == (
        503,
        "the brokers have not answered for 31 s\nassigned: eraser.hashes[0,2]",
    )
    health.stopping()
    assert get(f"{url}/readyz")[0] == 503


def test_liveness_fails_when_the_loop_stops_completing_iterations(endpoint):
    url, health, _, clock = endpoint
    clock.now += 1000  # before the loop starts (the matcher replaying) nothing is watched
    assert get(f"{url}/healthz") == (200, "alive")
    health.running()
    clock.now += 100
    assert get(f"{url}/healthz") == (200, "alive")
    clock.now += 21
    assert get(f"{url}/healthz") == (
        503,
        "the consume loop has not completed an iteration for 121 s",
    )
    health.beat()
    assert get(f"{url}/healthz") == (200, "alive")


def test_metrics_are_served_with_initialised_label_values_and_the_service(endpoint):
    url, _, metrics, _ = endpoint
    metrics.fetched_bytes.labels("http").inc(1234)
    status, body = get(f"{url}/metrics")
    assert status == 200
    assert 'eraser_ingest_fetched_bytes_total{service="ingest",source="http"} 1234.0' in body
    undecodable = 'reason="MediaUndecodableError",service="ingest"'
    assert f"eraser_ingest_dead_letters_total{{{undecodable}}} 0.0" in body
    assert 'eraser_ingest_verdicts_total{service="ingest",verdict="error"} 0.0' in body


def samples(metrics, name):
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in metrics.exported.collect()
        for s in family.samples
        if s.name == name
    }


def test_matches_exist_for_every_configured_bank_and_signal_before_any_match():
    metrics = MatcherMetrics()
    metrics.init_matches(["parents", "regulator"])
    series = samples(metrics, "eraser_matcher_matches_total")
    banks_and_signals = {(dict(labels)["bank"], dict(labels)["signal"]) for labels in series}
    assert banks_and_signals == {
        (bank, signal)
        for bank in ("parents", "regulator")
        for signal in ("sha256", "md5", "pdq", "embedding", "keypoints", "face", "vpdq")
    }
    assert set(series.values()) == {0.0}


def test_index_behind_seconds_is_computed_at_each_scrape():
    metrics = MatcherMetrics()
    clock = Clock()
    metrics.follow_index(lambda: clock.now - 480)
    assert samples(metrics, "eraser_matcher_index_behind_seconds") == {
        (("service", "matcher"),): 20.0
    }
    clock.now += 45  # nothing reported in between, as when the follower is stuck
    assert samples(metrics, "eraser_matcher_index_behind_seconds") == {
        (("service", "matcher"),): 65.0
    }


def test_port_zero_serves_nothing():
    assert serve(0, IngestMetrics().exported, Health()) is None


def test_the_liveness_bound_outlasts_the_longest_healthy_iteration():
    slow = KafkaSettings(max_poll_interval_ms=60_000, produce_timeout_ms=30_000)
    assert IngestSettings(kafka=slow).liveness_bound_s() == 2 * (60 + 2 * 30)
    assert IngestSettings(kafka=slow, liveness_timeout_s=121).liveness_bound_s() == 121
    with pytest.raises(ValidationError, match="must exceed KAFKA_MAX_POLL_INTERVAL_MS"):
        IngestSettings(kafka=slow, liveness_timeout_s=120)
