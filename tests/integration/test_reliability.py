"""Delivery under crashes, hostile input, and clean shutdown, through the real broker."""

from __future__ import annotations

import signal

from services.bench.chaos import run_chaos
from services.bench.deployment import Deployment
from services.bench.hostile import CORPUS_ENV, Origin, corpus, default_canary, run_corpus
from services.bench.report import table
from services.samples import photo_bytes


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
                (o.case.name, o.case.expect, o.verdict, o.dead_letter, o.reason, o.canary_ok)
                for o in outcomes
            ],
        )
    )
    assert len(outcomes) >= 50
    assert [o.case.name for o in outcomes if not o.passed] == []
    assert peak < 1024**3, f"ingest peaked at {peak / 2**20:.0f} MiB"
    assert codes == {"ingest": 0, "matcher": 0, "actions": 0}


def test_no_upload_or_action_is_lost_when_services_are_killed(broker, tmp_path):
    eraser = Deployment(
        broker.bootstrap_servers, tmp_path, env={"KAFKA_SESSION_TIMEOUT_MS": "3000"}, partitions=6
    )
    try:
        result = run_chaos(eraser, uploads=600, kills=2, seed=7, timeout_s=240)
    finally:
        eraser.close()
    print(table(("measure", "value", "requirement"), result.rows()))
    assert result.kills == {"ingest": 2, "matcher": 2, "actions": 2}
    assert result.missing_verdicts == 0
    assert result.expected_actions == 60
    assert result.missing_actions == 0 and result.unexpected_actions == 0
    assert result.wrong_actions == 0 and result.unsigned_actions == 0


def test_sigterm_finishes_the_batch_commits_and_exits_zero_quickly(make_eraser):
    eraser = make_eraser(start=False)
    eraser.register("kids", {"coffee": photo_bytes("coffee.png")})
    first = [eraser.upload(f"c-{n}", photo_bytes("coffee.png"), flush=False) for n in range(150)]
    eraser.flush()
    eraser.pipeline.start()
    while len(eraser.verdicts) < 20:
        eraser.read()
    for process in eraser.pipeline.processes.values():
        process.send_signal(signal.SIGTERM)
    codes = {name: p.wait(timeout=10) for name, p in eraser.pipeline.processes.items()}
    assert codes == {"ingest": 0, "matcher": 0, "actions": 0}

    eraser.pipeline.start()  # the same groups carry on from the committed offsets
    eraser.wait_for_verdicts(first, timeout_s=60)
    eraser.settle(2.0)
    assert set(first) <= eraser.verdicts.keys()
    repeated = {u: len(v) for u, v in eraser.verdicts.items() if len(v) > 1}
    assert repeated == {}, "a clean stop commits what it produced: nothing is redone"
    assert len(eraser.action_ids) == len(set(eraser.action_ids)) == 150
