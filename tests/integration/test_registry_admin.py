"""Banks, imports, exports, withdrawals, negative banks, the audit log and the admin API, through
the real broker and the real service processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from services.admin.formats import FORMATS, parse, serialise
from services.registrar import hash_file
from services.samples import photo_bytes
from services.shared.config import TopicSettings
from services.shared.topics import TOMBSTONE_RETENTION_MS, ensure_topics
from tests.images import encode, gradient

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png")


def eraser_cli(deployment, *args, stdin=None):
    env = {**os.environ, **deployment.env, "ERASER_ACTOR": "test-operator"}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def hash_list(names, bank="partner"):
    """An HMA text list of the photos' PDQ and MD5 hashes, as a partner programme would share."""
    lines = []
    for name in names:
        signals = hash_file(photo_bytes(name), bank, 50).registration.signals
        lines += [f"pdq {signals.pdq[0]}", f"photo_md5 {signals.md5}"]
    return "\n".join(lines) + "\n"


def wait_until(deployment, name, expected, timeout_s=10.0):
    """Upload copies of ``name`` until the verdict is ``expected``; seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        upload = deployment.upload(f"probe-{time.monotonic()}", photo_bytes(name))
        verdict = deployment.wait_for_verdicts([upload], timeout_s=5).get(upload)
        if verdict is not None and verdict.verdict == expected:
            return time.monotonic() - started
    raise AssertionError(f"{name} did not become {expected} within {timeout_s} s")


@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if fmt != "vpdq"])  # vpdq: test_video
def test_import_then_export_round_trips_through_the_registry(make_eraser, tmp_path, fmt):
    eraser = make_eraser(start=False)
    source = tmp_path / f"list.{fmt}"
    original = parse(hash_list(PHOTOS), "hma", "partner").entries
    source.write_text(serialise(original, fmt))
    imported = eraser_cli(
        eraser,
        "import",
        str(source),
        "--bank",
        "partner",
        "--format",
        fmt,
        "--reason",
        "partner list 2026-11",
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported 6 entries into partner as batch" in imported.stdout
    exported = eraser_cli(eraser, "export", "--bank", "partner", "--format", fmt)
    again = sorted(parse(exported.stdout, fmt, "partner").entries, key=lambda e: e.entry_id)
    assert [(e.entry_id, e.signals) for e in again] == sorted(
        [(e.entry_id, e.signals) for e in original]
    )
    assert {e.labels["batch"] for e in again} == {imported.stdout.split()[-1]}


def test_an_invalid_line_stops_the_import_unless_skipped(make_eraser, tmp_path):
    eraser = make_eraser(start=False)
    source = tmp_path / "list.txt"
    source.write_text(hash_list(["coffee.png"]) + "pdq 12345\n")
    refused = eraser_cli(eraser, "import", str(source), "--bank", "partner", "--format", "hma")
    assert refused.returncode == 2
    assert f"{source}:line 3:" in refused.stderr and "nothing imported" in refused.stderr
    assert eraser_cli(eraser, "export", "--bank", "partner", "--format", "hma").stdout == ""
    skipped = eraser_cli(
        eraser, "import", str(source), "--bank", "partner", "--format", "hma", "--skip-invalid"
    )
    assert skipped.returncode == 0 and "imported 2 entries" in skipped.stdout
    assert f"skipped {source}:line 3:" in skipped.stderr


def test_withdrawal_by_entry_batch_and_bank_stops_matching_within_10_s(make_eraser, tmp_path):
    eraser = make_eraser()
    entries = eraser.register("parents", {"astronaut": photo_bytes("astronaut.png")})
    source = tmp_path / "list.txt"
    source.write_text(hash_list(["coffee.png"]))
    batch = eraser_cli(eraser, "import", str(source), "--bank", "partner", "--format", "hma")
    batch_id = batch.stdout.split()[-1]
    eraser.register("regulator", {"chelsea": photo_bytes("chelsea.png")})
    for name in PHOTOS:
        wait_until(eraser, name, "match", timeout_s=30.0)  # the services are still starting

    eraser_cli(eraser, "withdraw", entries["astronaut"], "--reason", "request 1")
    eraser_cli(eraser, "withdraw", "--batch", batch_id, "--reason", "list recalled")
    eraser_cli(eraser, "withdraw", "--bank", "regulator", "--reason", "bank closed")
    for name in PHOTOS:
        wait_until(eraser, name, "clean", timeout_s=10.0)

    audit = eraser_cli(eraser, "audit", "--json")
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    withdrawals = [
        (r["actor"], r["details"]["by"], r["count"], r["reason"])
        for r in records
        if r["operation"] == "withdraw"
    ]
    assert withdrawals == [
        ("test-operator", "entry", 1, "request 1"),
        ("test-operator", "batch", 2, "list recalled"),
        ("test-operator", "bank", 1, "bank closed"),
    ]
    assert {r["operation"] for r in records} >= {"import", "withdraw"}


def test_a_negative_bank_match_suppresses_actions(make_eraser):
    eraser = make_eraser()
    changed = eraser_cli(eraser, "bank", "set", "stock", "--negative", "--reason", "stock photos")
    assert changed.returncode == 0, changed.stderr
    eraser.register("stock", {"coffee": photo_bytes("coffee.png")})
    eraser.register(
        "kids", {"coffee": photo_bytes("coffee.png"), "chelsea": photo_bytes("chelsea.png")}
    )
    coffee = eraser.upload("coffee-copy", photo_bytes("coffee.png"))
    chelsea = eraser.upload("chelsea-copy", photo_bytes("chelsea.png"))
    verdicts = eraser.wait_for_verdicts([coffee, chelsea])
    eraser.wait_for_actions(1)
    eraser.settle(2.0)
    assert {m.bank for m in verdicts[coffee].matches} == {"stock", "kids"}
    assert [(a.content_id, a.bank) for a in eraser.actions] == [("chelsea-copy", "kids")]
    listing = eraser_cli(eraser, "bank", "list").stdout
    assert '"negative": true' in listing.split("stock\t")[1].splitlines()[0]


def topic_configs(deployment, topic):
    admin = KafkaAdminClient(bootstrap_servers=deployment.kafka.bootstrap_servers.split(","))
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        described = admin.describe_configs([resource], config_filter="all")["topic"][topic]
        return {key: entry["value"] for key, entry in described.items()}
    finally:
        admin.close()


def test_registry_and_banks_topics_keep_tombstones_for_good(make_eraser):
    eraser = make_eraser(start=False)
    for topic in (eraser.topics.registry, eraser.topics.banks):
        configs = topic_configs(eraser, topic)
        assert configs["cleanup.policy"] == "compact"
        assert configs["delete.retention.ms"] == str(TOMBSTONE_RETENTION_MS)
    # A registry topic made before this setting (or by hand) is corrected by `eraser topics`.
    older = TopicSettings.model_validate(
        {**eraser.topics.model_dump(), "registry": f"{eraser.topics.registry}.older"}
    )
    admin = KafkaAdminClient(bootstrap_servers=eraser.kafka.bootstrap_servers.split(","))
    admin.create_topics(
        [NewTopic(older.registry, 1, 1, topic_configs={"cleanup.policy": "compact"})]
    )
    admin.close()
    assert "delete.retention.ms" not in topic_configs(eraser, older.registry)
    assert ensure_topics(eraser.kafka, older) == []
    assert topic_configs(eraser, older.registry)["delete.retention.ms"] == str(
        TOMBSTONE_RETENTION_MS
    )


def test_register_shows_progress_and_json_export_then_reimport_keeps_everything(
    make_eraser, tmp_path
):
    eraser = make_eraser(start=False)
    folder = tmp_path / "protected"
    folder.mkdir()
    for name in ("coffee.png", "chelsea.png"):
        (folder / name).write_bytes(photo_bytes(name))
    registered = eraser_cli(eraser, "register", "--bank", "parents", str(folder), "--reason", "r1")
    assert registered.returncode == 0, registered.stderr
    assert [line.split("\t")[1] for line in registered.stdout.splitlines()] == [
        str(folder / "chelsea.png"),
        str(folder / "coffee.png"),
    ]
    assert "progress\t2/2 images" in registered.stderr.splitlines()

    exported = eraser_cli(eraser, "export", "--bank", "parents", "--format", "json")
    entries = json.loads(exported.stdout)
    assert len(entries) == 2 and all(e["signals"]["embedding"] for e in entries)
    hma = eraser_cli(eraser, "export", "--bank", "parents", "--format", "hma")
    assert "warning: 2 entries have image embeddings" in hma.stderr
    source = tmp_path / "parents.json"
    source.write_text(exported.stdout)

    elsewhere = eraser_cli(eraser, "import", str(source), "--bank", "other", "--format", "json")
    assert elsewhere.returncode == 2
    assert f"{source}:item 1: entry id " in elsewhere.stderr
    assert "belongs to bank 'parents'" in elsewhere.stderr

    again = eraser_cli(
        eraser, "import", str(source), "--bank", "parents", "--format", "json", "--batch", "b2"
    )
    assert again.stdout.strip() == "imported 2 entries into parents as batch b2"
    reexported = json.loads(
        eraser_cli(eraser, "export", "--bank", "parents", "--format", "json").stdout
    )
    assert sorted(e["signals"]["embedding"] for e in reexported) == sorted(
        e["signals"]["embedding"] for e in entries
    )
    assert {e["labels"]["batch"] for e in reexported} == {"b2"}
    withdrawn = eraser_cli(eraser, "withdraw", "--batch", "b2", "--reason", "recalled")
    assert "2 entries withdrawn" in withdrawn.stderr


def test_bank_set_changes_only_the_flags_given_and_register_uses_the_published_floor(
    make_eraser, tmp_path
):
    eraser = make_eraser(start=False, banks={"kids": {"quality_floor": 0, "action": "hide"}})
    first = eraser_cli(
        eraser, "bank", "set", "kids", "--pdq-threshold", "20", "--auto-threshold", "10"
    )
    assert first.returncode == 0, first.stderr
    eraser_cli(eraser, "bank", "set", "kids", "--negative", "--embedding-threshold", "0.95")
    listing = eraser_cli(eraser, "bank", "list").stdout
    policy = json.loads(listing.split("kids\t0 entries\t")[1].splitlines()[0])
    assert {k: policy[k] for k in ("pdq_threshold", "auto_threshold", "action", "negative")} == {
        "pdq_threshold": 20,
        "auto_threshold": 10,
        "action": "hide",  # from ERASER_BANKS, which the first `set` started from
        "negative": True,
    }
    assert policy["embedding_threshold"] == 0.95 and policy["quality_floor"] == 0
    refused = eraser_cli(eraser, "bank", "set", "kids", "--auto-threshold", "30")
    assert refused.returncode == 2
    assert "auto_threshold (30) must be at most pdq_threshold (20)" in refused.stderr

    # A featureless image (PDQ quality 6): ERASER_BANKS' floor (0) would keep its PDQ hash.
    eraser_cli(eraser, "bank", "set", "kids", "--quality-floor", "50")
    flat = tmp_path / "flat.png"
    flat.write_bytes(encode(gradient(256, 256), "PNG"))
    registered = eraser_cli(eraser, "register", "--bank", "kids", str(flat))
    assert registered.returncode == 0, registered.stderr
    assert "PDQ quality 6 < 50: registered without PDQ" in registered.stderr
    (entry,) = json.loads(eraser_cli(eraser, "export", "--bank", "kids", "--format", "json").stdout)
    assert "pdq" not in entry["signals"] and entry["signals"]["sha256"]


def test_a_large_withdrawal_is_audited_with_every_entry_id(make_eraser, tmp_path):
    eraser = make_eraser(start=False)
    ids = [f"entry-{n:04}" for n in range(1500)]
    source = tmp_path / "list.txt"
    source.write_text("".join(f"md5 {n:032x} {entry_id}\n" for n, entry_id in enumerate(ids)))
    imported = eraser_cli(eraser, "import", str(source), "--bank", "partner", "--format", "hma")
    assert imported.returncode == 0, imported.stderr
    withdrawn = eraser_cli(eraser, "withdraw", *ids, "--reason", "bulk request 9")
    assert withdrawn.returncode == 0, withdrawn.stderr
    records = [
        json.loads(line) for line in eraser_cli(eraser, "audit", "--json").stdout.splitlines()
    ]
    withdrawals = [r for r in records if r["operation"] == "withdraw"]
    assert [(r["count"], r["details"]["part"]) for r in withdrawals] == [
        (1500, "1/2"),
        (1500, "2/2"),
    ]
    assert [i for r in withdrawals for i in r["entry_ids"]] == ids


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_admin_api_registers_through_kafka_and_refuses_bad_tokens(make_eraser):
    eraser = make_eraser()
    port = _free_port()
    token = "api-token-for-integration-tests"
    env = {
        **os.environ,
        **eraser.env,
        "ERASER_ADMIN_TOKENS": f"regulator-ui:{token}",
        "ERASER_ADMIN_HTTP_PORT": str(port),
    }
    producer = KafkaProducer(bootstrap_servers=eraser.kafka.bootstrap_servers)
    producer.send(eraser.topics.audit, key=b"intruder", value=b"not an audit record")
    producer.close()
    admin = subprocess.Popen(
        [sys.executable, "-m", "services.admin"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None, bearer=token, content_type="application/json"):
        request = urllib.request.Request(base + path, data=body, method=method)
        request.add_header("Content-Type", content_type)
        if bearer:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert call("GET", "/banks", bearer=None)[0] == 401
        assert call("GET", "/banks", bearer="not-the-token-at-all")[0] == 401
        status, body, _ = call(
            "POST",
            "/banks/kids/images?reason=request+77",
            photo_bytes("coffee.png"),
            content_type="application/octet-stream",
        )
        assert status == 201, body
        entry_id = json.loads(body)["entry_id"]
        wait_until(eraser, "coffee.png", "match", timeout_s=30.0)
        status, body, _ = call("GET", "/banks/kids/export?format=json")
        (entry,) = json.loads(body)  # read back from the registry topic
        assert entry["entry_id"] == entry_id and entry["signals"]["embedding"]
        status, body, headers = call("GET", "/banks/kids/export?format=hma")
        assert body.decode().startswith("pdq ") and "embeddings" in headers["Eraser-Warning"]
        status, body, headers = call("GET", "/audit")
        operations = [r["record"]["operation"] for r in json.loads(body)]
        assert operations == ["register", "case-open"], "registering opens the requester's case"
        assert headers["Eraser-Unreadable-Records"] == "1"
        status, body, _ = call("GET", "/openapi.json", bearer=None)
        assert status == 200 and "/banks/{bank}/images" in json.loads(body)["paths"]
    finally:
        admin.terminate()
        admin.wait(timeout=10)
