"""The ``eraser`` command as an operator uses it, against the real broker."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer

from services.bench.deployment import Deployment
from tests.images import photo, photo_bytes


def _eraser(*args, env, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def test_run_register_withdraw_with_any_kafka_client(broker, tmp_path):
    eraser = Deployment(
        broker.bootstrap_servers, tmp_path
    )  # topics and env only; `eraser run` starts
    photos = tmp_path / "protected"
    photos.mkdir()
    (photos / "coffee.png").write_bytes(photo_bytes("coffee.png"))
    (photos / "notes.txt").write_text("not an image, and not an image suffix: skipped")
    run = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"],
        env={**os.environ, **eraser.env},
        stderr=subprocess.DEVNULL,
    )
    try:
        registered = _eraser("register", "--bank", "kids", str(photos), env=eraser.env)
        assert registered.returncode == 0, registered.stderr
        (line,) = registered.stdout.splitlines()
        entry_id, path = line.split("\t")
        assert path == str(photos / "coffee.png")

        # A platform's own producer, speaking the documented wire format by hand.
        upload_id = str(uuid.uuid4())
        uploaded = eraser.media_root / "post-1.png"
        uploaded.write_bytes(photo_bytes("coffee.png"))
        event = {
            "specversion": "1.0",
            "id": upload_id,
            "source": "https://platform.example",
            "type": "eraser.upload.v1",
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": {"content_id": "post-1", "media_url": uploaded.as_uri()},
        }
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        producer.send(eraser.topics.uploads, key=b"post-1", value=json.dumps(event).encode())
        producer.flush()
        producer.close()

        verdict = eraser.wait_for_verdicts([upload_id])[upload_id]
        assert verdict.verdict == "match", verdict.error
        assert verdict.matches[0].entry_id == entry_id
        eraser.wait_for_actions(1)
        eraser.settle(1.0)
        assert [(a.content_id, a.entry_id, a.action) for a in eraser.actions] == [
            ("post-1", entry_id, "remove")
        ]

        withdrawn = _eraser("withdraw", entry_id, env=eraser.env)
        assert withdrawn.stdout.strip() == f"withdrawn\t{entry_id}"
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0
        eraser.close()


def test_demo_prints_its_table_on_the_embedded_broker():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ERASER_"))}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("post-01") and " match " in line for line in lines)
    assert any("unrelated photo" in line and " clean" in line for line in lines)
    assert lines[-1] == "16 verdicts for 16 uploads, 9 actions"


def _readme_env():
    """The environment the README's commands run in: nothing of eraser's or Kafka's set."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ERASER_"))}


def _lines_until(stream, last_prefix, timeout_s):
    """Lines read from ``stream`` up to the first that starts with ``last_prefix``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    read, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            read.append(lines.get(timeout=1).rstrip("\n"))
        except queue.Empty:
            continue
        if read[-1].startswith(last_prefix):
            return read
    raise AssertionError(f"no line starting {last_prefix!r} within {timeout_s} s: {read}")


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.status, answer.read().decode()


def test_eraser_run_as_the_readme_says_serves_every_process_and_scans_an_upload(tmp_path):
    eraser = str(Path(sys.executable).parent / "eraser")
    run = subprocess.Popen(
        [eraser, "run", "--ingest-processes", "2"],
        env=_readme_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        block = _lines_until(run.stdout, "platforms publish", timeout_s=120)
        assert block[0] == "eraser is ready (Ctrl-C stops it)"
        processes = {
            line.split()[0]: (int(line.split()[2]), line.split()[3])
            for line in block
            if line.startswith("  ") and " pid " in line
        }
        assert {name: url for name, (_, url) in processes.items()} == {
            "ingest": "http://localhost:9101/metrics",
            "ingest-2": "http://localhost:9111/metrics",
            "matcher": "http://localhost:9102/metrics",
            "actions": "http://localhost:9103/metrics",
        }
        for pid, url in processes.values():
            os.kill(pid, 0)  # alive
            port = int(url.split(":")[2].split("/")[0])
            status, metrics = _get(port, "/metrics")
            assert status == 200 and "eraser_" in metrics
            assert _get(port, "/healthz")[0] == 200

        # What the block says to do next, in another shell.
        (export,) = [line.strip() for line in block if "export KAFKA_BOOTSTRAP_SERVERS=" in line]
        shell = {**_readme_env(), "KAFKA_BOOTSTRAP_SERVERS": export.split("=", 1)[1]}
        (tmp_path / "photo.png").write_bytes(photo_bytes("chelsea.png"))
        registered = subprocess.run(
            [eraser, "register", "--bank", "kids", str(tmp_path / "photo.png")],
            env=shell,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert registered.returncode == 0, registered.stderr
        entry_id = registered.stdout.split("\t")[0]
        photo("chelsea.png").resize((300, 200)).save(tmp_path / "copy.jpg", quality=70)
        uploaded = subprocess.run(
            [eraser, "upload", str(tmp_path / "copy.jpg")],
            env=shell,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert uploaded.returncode == 0, uploaded.stderr
        verdict = json.loads(uploaded.stdout)
        assert verdict["type"] == "eraser.verdict.v1" and verdict["specversion"] == "1.0"
        assert verdict["data"]["verdict"] == "match"
        assert {m["entry_id"] for m in verdict["data"]["matches"]} == {entry_id}
        assert verdict["data"]["content_id"] == "copy.jpg"
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=60)
    assert code == 0


def test_unknown_entries_and_banks_are_refused_naming_them(broker, tmp_path):
    eraser = Deployment(broker.bootstrap_servers, tmp_path)
    try:
        for args, expected in [
            (["withdraw", "no-such-entry"], "eraser: not in the registry: no-such-entry; "),
            (["withdraw", "--bank", "nobody"], "eraser: bank 'nobody' has no entries"),
            (["export", "--bank", "nobody", "--format", "csv"], "eraser: bank 'nobody' has no"),
            (["bank", "reset", "nobody"], "eraser: bank 'nobody' has no published policy"),
        ]:
            result = _eraser(*args, env=eraser.env)
            assert result.returncode == 2, (args, result.stderr)
            assert result.stdout == ""
            (line,) = result.stderr.splitlines()
            assert line.startswith(expected), (args, line)
    finally:
        eraser.close()
