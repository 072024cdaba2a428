"""``eraser run``: the whole pipeline on one host, checked before it starts, announced when ready.

Every service's configuration and every HTTP port is checked before any process starts, so a
problem is one line naming the variable and its fix, not a service dying among the others' logs.
Without ``KAFKA_BOOTSTRAP_SERVERS`` it starts the embedded broker (and, unless one is set, signs
actions with a throw-away key). Once every process answers ``/readyz`` it prints one block: the
broker's address, which port serves which process, and how to send an upload.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TextIO

from services.pipeline import Pipeline, http_ports, instances, port_problems
from services.shared.broker import EmbeddedBroker
from services.shared.config import (
    ActionsSettings,
    IngestSettings,
    KafkaSettings,
    MatcherSettings,
    MediaSettings,
    PolicySettings,
    TopicSettings,
    VideoSettings,
    configuration_problems,
)
from services.shared.connectivity import require_broker
from services.shared.errors import UsageError
from services.shared.service import stop_on_signals
from services.shared.topics import ensure_topics

# Groups before the services that hold them, so every problem is reported at once.
_CHECKED = (
    KafkaSettings,
    TopicSettings,
    PolicySettings,
    MediaSettings,
    VideoSettings,
    IngestSettings,
    MatcherSettings,
    ActionsSettings,
)


def run(ingest_processes: int, out: TextIO = sys.stdout) -> int:
    """Check, start, announce and supervise the pipeline until SIGTERM or SIGINT; the exit code.

    Raises:
        UsageError: the configuration or a port is wrong, or no broker answers; nothing started.
    """
    embedded = not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    throwaway_key = embedded and not os.environ.get("ERASER_ACTIONS_SIGNING_KEY")
    if embedded:
        # The embedded broker's group joins take a whole poll interval: keep it short.
        os.environ.setdefault("KAFKA_MAX_POLL_INTERVAL_MS", "3000")
    if throwaway_key:
        os.environ["ERASER_ACTIONS_SIGNING_KEY"] = secrets.token_hex(32)
    names = instances(ingest_processes)
    ports = http_ports(names, os.environ)
    problems = configuration_problems(*_CHECKED) + port_problems(ports)
    if problems:
        raise UsageError("\n".join(problems))
    if not embedded:
        require_broker(KafkaSettings())
    stop = stop_on_signals()
    broker = EmbeddedBroker().start() if embedded else None
    try:
        if broker is not None:
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        ensure_topics(KafkaSettings(), TopicSettings())
        pipeline = Pipeline({}, names).start()
        try:
            if _wait_until_ready(pipeline, ports, stop):
                out.write(_announcement(pipeline, ports, embedded, throwaway_key))
                out.flush()
            while not stop.wait(0.5) and not pipeline.exited():
                pass
            if pipeline.exited() and not stop.is_set():
                print(f"service exited: {pipeline.exited()}; stopping", file=sys.stderr)
        finally:
            codes = pipeline.stop()
    finally:
        if broker is not None:
            broker.stop()
    return 0 if stop.is_set() and not any(codes.values()) else 1


def _wait_until_ready(pipeline: Pipeline, ports: Mapping[str, int], stop: threading.Event) -> bool:
    """Wait until every process that serves HTTP answers /readyz; False if one exited first."""
    waiting = {name for name, port in ports.items() if port}
    while waiting and not stop.is_set():
        if pipeline.exited():
            return False
        waiting = {name for name in waiting if not _ready(ports[name])}
        time.sleep(0.2)
    return not stop.is_set()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _announcement(
    pipeline: Pipeline, ports: Mapping[str, int], embedded: bool, throwaway_key: bool
) -> str:
    """The block printed once everything is ready."""
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topics = TopicSettings()
    kind = "embedded broker, in memory" if embedded else "KAFKA_BOOTSTRAP_SERVERS"
    lines = ["eraser is ready (Ctrl-C stops it)", f"  kafka      {bootstrap} ({kind})"]
    for name, process in pipeline.processes.items():
        port = ports[name]
        where = f"http://localhost:{port}/metrics  /healthz  /readyz" if port else "no HTTP"
        lines.append(f"  {name:<10} pid {process.pid:<8} {where}")
    if throwaway_key:
        lines.append("  actions are signed with a throw-away key: set ERASER_ACTIONS_SIGNING_KEY")
    lines += [
        "try it, in another shell:",
        *([f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}"] if embedded else []),
        "  eraser register --bank kids photo.jpg   # keeps hashes of a protected photo, never it",
        "  eraser upload copy.jpg                  # publishes an upload, prints its verdict",
        f"platforms publish eraser.upload.v1 events to {topics.uploads} and read "
        f"{topics.verdicts} and {topics.actions} (docs/events.md)",
    ]
    return "\n".join(lines) + "\n"
