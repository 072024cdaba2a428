"""The ``eraser`` command as an operator uses it, against the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from kafka import KafkaProducer

from services.bench.deployment import Deployment
from tests.images import photo_bytes


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


def test_register_reports_files_that_are_not_images(broker, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + os.urandom(100))
    result = _eraser(
        "register",
        "--bank",
        "kids",
        str(bad),
        env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"error\t{bad}\t" in result.stderr


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
