"""Delivery under crashes, hostile input, and clean shutdown, through the real broker."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from services.bench.chaos import run_chaos
from services.bench.deployment import Deployment
from services.bench.hostile import CORPUS_ENV, corpus, default_canary, run_corpus
from services.bench.origin import Origin
from services.bench.report import table
from services.samples import photo_bytes
from services.shared.schemas import UploadReceived


def test_every_hostile_input_is_dead_lettered_and_the_next_upload_still_scanned(broker, tmp_path):
    canary = default_canary()
    origin = Origin(canary)
    eraser = Deployment(broker.bootstrap_servers, tmp_path, env=CORPUS_ENV)
    try:
        eraser.register("bench", {"coffee": photo_bytes("coffee.png")})
        eraser.pipeline.start()
        cases = corpus(eraser.media_root, origin, int(CORPUS_ENV["ERASER_MAX_MEDIA_BYTES"]))
        outcomes, peak = run_corpus(eraser, cases, canary)
    finally:
        codes = eraser.close()
        origin.close()
    print(
        table(
            ("case", "expected", "verdict", "dead letter", "reason", "next upload"),
            [
                (o.case.name, o.case.expected, o.verdict, o.dead_letter, o.reason, o.canary_ok)
                for o in outcomes
            ],
        )
    )
    assert len(outcomes) >= 60
    assert [o.case.name for o in outcomes if not o.passed] == []
    assert peak < 1024**3, f"ingest peaked at {peak / 2**20:.0f} MiB"
    assert codes == {"ingest": 0, "matcher": 0, "actions": 0}


def test_no_upload_or_action_is_lost_when_services_are_killed(broker, tmp_path):
    eraser = Deployment(
        broker.bootstrap_servers, tmp_path, env={"KAFKA_SESSION_TIMEOUT_MS": "3000"}, partitions=6
    )
    try:
        result = run_chaos(eraser, uploads=300, kills=3, seed=7, stall_s=60)
    finally:
        eraser.close()
    print(table(("measure", "value", "requirement"), result.rows()))
    assert result.kills == {"ingest": 3, "matcher": 3, "actions": 3}
    assert result.missing_verdicts == 0
    assert result.expected_actions == 30
    assert result.missing_actions == 0 and result.unexpected_actions == 0
    assert result.wrong_actions == 0 and result.unsigned_actions == 0
    assert result.passed


def test_sigterm_finishes_the_batch_commits_and_exits_zero_quickly(make_eraser, tmp_path):
    # Uploads are fetched from a local origin that answers the first batch's two at once and holds
    # the rest until released: ingest is in the middle of its second batch when the signal comes.
    # No embeddings: they are not what this is about.
    origin = _GatedOrigin(photo_bytes("coffee.png"), free=2)
    eraser = make_eraser(
        start=False,
        env={
            "ERASER_INGEST_EMBEDDINGS": "false",
            "ERASER_INGEST_BATCH_SIZE": "2",
            "ERASER_FETCH_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
    )
    eraser.register("kids", {"coffee": photo_bytes("coffee.png")})
    for n in range(8):
        eraser.upload_event(UploadReceived(content_id=f"c-{n}", media_url=origin.url), False)
    eraser.flush()
    eraser.pipeline.start()
    deadline = time.monotonic() + 30
    while not eraser.action_ids and time.monotonic() < deadline:  # the first batch is through
        eraser.read(timeout_ms=20)
    assert origin.holding(timeout_s=10), "ingest waits for the second batch's media"

    for process in eraser.pipeline.processes.values():
        process.send_signal(signal.SIGTERM)  # all three at once
    origin.release()
    codes = eraser.pipeline.stop(timeout_s=10.0)  # one deadline for all three; then SIGKILL
    origin.close()
    assert codes == {"ingest": 0, "matcher": 0, "actions": 0}
    assert _records_after_the_signal(tmp_path / "ingest.log") > 0, "the batch was finished"
    # What each service committed is exactly what it processed, each record once: had it
    # processed more, a restart would process those again; had it committed more, their outputs
    # would be lost. (Fresh topics written without transactions: offsets run 0, 1, 2 ...)
    topics = eraser.topics
    inputs = {"ingest": topics.uploads, "matcher": topics.hashes, "actions": topics.verdicts}
    processed = {
        name: _processed(tmp_path / f"{name}.log", topic) for name, topic in inputs.items()
    }
    assert {name: _committed(eraser, name, topic) for name, topic in inputs.items()} == processed
    assert len(processed["ingest"]) >= 4 and processed["actions"], processed


class _GatedOrigin:
    """Serves one image: the first ``free`` requests at once, later ones once released."""

    def __init__(self, image: bytes, free: int) -> None:
        self._gate, self._held = threading.Event(), threading.Event()
        self._count = itertools.count(1)
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if next(origin._count) > free:
                    origin._held.set()
                    origin._gate.wait(timeout=10)
                self.send_response(200)
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/coffee.png"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def holding(self, timeout_s: float) -> bool:
        """Whether a request is (or was) held, waiting up to ``timeout_s`` for one."""
        return self._held.wait(timeout_s)

    def release(self) -> None:
        """Answer every held request, and every later one at once."""
        self._gate.set()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _committed(eraser: Deployment, service: str, topic: str) -> list[tuple[int, int]]:
    """(partition, offset) of every record of ``topic`` below the service's committed offsets."""
    group = eraser.env[f"ERASER_{service.upper()}_GROUP_ID"]
    consumer = KafkaConsumer(
        group_id=group, enable_auto_commit=False, **eraser.kafka.client_options()
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = {tp.partition: consumer.committed(tp) or 0 for tp in partitions}
    finally:
        consumer.close(autocommit=False)
    return sorted((partition, offset) for partition, end in ends.items() for offset in range(end))


def _processed(log: Path, topic: str) -> list[tuple[int, int]]:
    """(partition, offset) of every record of ``topic`` the service logged as processed."""
    return sorted(
        (line["partition"], line["offset"])
        for line in _log(log)
        if line.get("message") == "processed a record" and line.get("topic") == topic
    )


def _records_after_the_signal(log: Path) -> int:
    """How many records ingest finished after it was asked to stop."""
    messages = [line.get("message") for line in _log(log)]
    return messages[messages.index("stop requested") :].count("processed a record")


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
