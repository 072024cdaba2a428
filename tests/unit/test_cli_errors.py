"""Mistakes a person at the ``eraser`` command can make: one line each, exit code 2, no traceback.

Local checks (paths, file formats, settings, ports) come before any network call: these run with
the bootstrap address pointing at a port nothing listens on, so a message about the broker would
mean the command reached for Kafka first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from PIL import Image

from services.bench.face_data import sdist_portraits
from services.cli import main
from services.pipeline import http_ports, instances
from tests.images import photo_bytes


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """No eraser or Kafka settings, and a bootstrap address nothing answers at."""
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "ERASER_")):
            monkeypatch.delenv(name)
    address = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)
    return address


def _fails(capsys, *argv):
    """Run ``eraser argv``; its stderr lines, after checking it exited 2 and printed no result."""
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return captured.err.splitlines()


def test_no_broker_names_the_address_and_how_to_get_one(capsys, no_broker):
    (line,) = _fails(capsys, "withdraw", "some-entry")
    assert f"no Kafka broker answered at {no_broker}" in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "eraser run" in line


def test_a_missing_path_is_named_before_kafka_is_asked(capsys, tmp_path):
    (line,) = _fails(capsys, "register", "--bank", "kids", str(tmp_path / "gone.jpg"))
    assert line == f"eraser: no such file or folder: {tmp_path / 'gone.jpg'}"


def test_a_file_that_is_not_an_image_registers_nothing(capsys, tmp_path):
    good, bad = tmp_path / "coffee.png", tmp_path / "broken.jpg"
    good.write_bytes(photo_bytes("coffee.png"))
    bad.write_bytes(b"\xff\xd8\xff" + bytes(100))
    lines = _fails(capsys, "register", "--bank", "kids", str(good), str(bad))
    assert len(lines) == 2
    assert lines[0] == f"eraser: {bad}: not an image in a supported format"
    assert "nothing registered" in lines[1]


def test_a_malformed_hash_list_names_its_lines(capsys, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("pdq " + "ab" * 32 + "\npdq 12345\n")
    lines = _fails(capsys, "import", str(listed), "--bank", "partner", "--format", "hma")
    assert lines[0].startswith(f"eraser: {listed}:line 2: ")
    assert "nothing imported" in lines[-1] and len(lines) == 2


def test_a_missing_hash_list_is_named(capsys, tmp_path):
    (line,) = _fails(capsys, "import", str(tmp_path / "no.txt"), "--bank", "b", "--format", "csv")
    assert f"{tmp_path / 'no.txt'}: No such file or directory" in line


def test_a_bad_bank_name_says_what_a_bank_name_is(capsys):
    (line,) = _fails(capsys, "register", "--bank", "Kids!", "photo.jpg")
    assert line.startswith("eraser register: argument --bank: a bank is lower-case letters")


def test_the_admin_api_without_tokens_says_how_to_make_one():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASER_")}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("ERASER_ADMIN_TOKENS: not set; ") and "openssl rand" in line


def test_run_on_an_external_broker_without_a_signing_key_starts_nothing(capsys):
    (line,) = _fails(capsys, "run")
    assert line.startswith("eraser: ERASER_ACTIONS_SIGNING_KEY: not set; ")
    assert "openssl rand -hex 32" in line


def test_run_reports_every_wrong_setting_at_once(capsys, monkeypatch):
    monkeypatch.setenv("KAFKA_MAX_POLL_INTERVAL_MS", "5")
    monkeypatch.setenv("ERASER_MAX_PIXELS", "many")
    lines = _fails(capsys, "run")
    assert [line.split(":")[1].strip() for line in lines] == [
        "KAFKA_MAX_POLL_INTERVAL_MS",
        "ERASER_MAX_PIXELS",
        "ERASER_ACTIONS_SIGNING_KEY",
    ]


def test_run_refuses_two_processes_on_one_port(capsys, monkeypatch):
    monkeypatch.setenv("ERASER_ACTIONS_SIGNING_KEY", "a-key-long-enough-to-sign")
    monkeypatch.setenv("ERASER_MATCHER_HTTP_PORT", "9111")
    (line,) = _fails(capsys, "run", "--ingest-processes", "2")
    assert line.startswith("eraser: port 9111: ingest-2 and matcher would both serve on it")


def test_run_refuses_a_port_another_program_holds(capsys, monkeypatch):
    monkeypatch.setenv("ERASER_ACTIONS_SIGNING_KEY", "a-key-long-enough-to-sign")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("ERASER_ACTIONS_HTTP_PORT", str(port))
        (line,) = _fails(capsys, "run", "--ingest-processes", "1")
    assert line == (
        f"eraser: port {port} (actions) is held by another program: stop it, or set "
        "ERASER_ACTIONS_HTTP_PORT to a free port"
    )


@pytest.mark.parametrize("ingest", [1, 2, 3, 16, 64])
def test_every_process_of_run_has_its_own_port_by_default(ingest):
    ports = http_ports(instances(ingest), {})
    assert len(set(ports.values())) == len(ports) == ingest + 2
    assert ports["ingest"] == 9101 and ports["matcher"] == 9102 and ports["actions"] == 9103
    if ingest > 1:
        assert ports["ingest-2"] == 9111


def test_a_group_photo_registered_with_faces_is_refused_until_a_face_is_picked(capsys, tmp_path):
    from tests.unit.test_faces import CACHE, side_by_side

    photos = sdist_portraits(CACHE)
    group = tmp_path / "group.jpg"
    group.write_bytes(side_by_side(photos["biden"].data, photos["obama"].data))
    lines = _fails(capsys, "register", "--bank", "kids", "--faces", str(group))
    assert lines[0].startswith(f"eraser: {group}: 2 faces: pick the child's with --face N")
    assert "nothing registered" in lines[1]

    assert main(["register", "--bank", "kids", "--preview", str(tmp_path / "p"), str(group)]) == 0
    assert capsys.readouterr().out == f"{group}\t2 faces\t{tmp_path / 'p' / 'group.faces.png'}\n"
    assert Image.open(tmp_path / "p" / "group.faces.png").size == (1200, 800)


def test_bank_set_has_a_flag_for_every_bank_policy_field():
    from services.cli import _parser
    from services.shared.schemas import BankPolicy

    parsed = vars(_parser().parse_args(["bank", "set", "kids"]))
    assert set(BankPolicy.model_fields) <= parsed.keys(), "add the flag in bank_commands.py"
