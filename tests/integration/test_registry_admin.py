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

from services.admin.formats import FORMATS, parse
from services.registrar import hash_file
from services.samples import photo_bytes

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


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_then_export_round_trips_through_the_registry(make_eraser, tmp_path, fmt):
    eraser = make_eraser(start=False)
    source = tmp_path / f"list.{fmt}"
    original = parse(hash_list(PHOTOS), "hma", "partner").entries
    from services.admin.formats import serialise

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
    assert refused.returncode == 1
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
    eraser.settle(2.0)
    assert {m.bank for m in verdicts[coffee].matches} == {"stock", "kids"}
    assert [(a.content_id, a.bank) for a in eraser.actions] == [("chelsea-copy", "kids")]
    listing = eraser_cli(eraser, "bank", "list").stdout
    assert '"negative": true' in listing.split("stock\t")[1].splitlines()[0]


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
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

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
        status, body = call(
            "POST",
            "/banks/kids/images?reason=request+77",
            photo_bytes("coffee.png"),
            content_type="application/octet-stream",
        )
        assert status == 201, body
        wait_until(eraser, "coffee.png", "match", timeout_s=30.0)
        status, body = call("GET", "/openapi.json", bearer=None)
        assert status == 200 and "/banks/{bank}/images" in json.loads(body)["paths"]
    finally:
        admin.terminate()
        admin.wait(timeout=10)
