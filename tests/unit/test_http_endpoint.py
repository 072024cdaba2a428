import socket
import urllib.error
import urllib.request

import pytest

from services.shared.metrics import Health, IngestMetrics, serve


@pytest.fixture
def endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = Health()
    metrics = IngestMetrics()
    server = serve(port, metrics.registry, health)
    yield f"http://127.0.0.1:{port}", health, metrics
    server.shutdown()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readiness_says_why_it_is_not_ready_until_it_is(endpoint):
    url, health, _ = endpoint
    health.set_ready(False, "replaying the registry")
    assert get(f"{url}/readyz") == (503, "replaying the registry")
    assert get(f"{url}/healthz") == (200, "ok")
    health.set_ready(True)
    assert get(f"{url}/readyz") == (200, "ready")


def test_metrics_are_served_with_initialised_label_values(endpoint):
    url, _, metrics = endpoint
    metrics.fetched_bytes.labels("http").inc(1234)
    status, body = get(f"{url}/metrics")
    assert status == 200
    assert 'eraser_ingest_fetched_bytes_total{source="http"} 1234.0' in body
    assert 'eraser_ingest_dead_letters_total{reason="MediaUndecodableError"} 0.0' in body


def test_port_zero_serves_nothing():
    assert serve(0, IngestMetrics().registry, Health()) is None
