"""The chaos check: thousands of uploads while every service is SIGKILLed and restarted.

Delivery is at-least-once, so after any number of crashes every upload must still get a verdict,
every expected action must still be published (repeats allowed, counted), and nothing may be
acted on wrongly. Kills happen at random points of progress, while batches are in flight.
Behind ``eraser bench chaos`` and the integration test.
"""

from __future__ import annotations

import io
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from services.bench.deployment import Deployment
from services.pipeline import SERVICES
from services.samples import photo_bytes
from services.shared.schemas import UploadReceived, event_id

PROTECTED = ("astronaut.png", "coffee.png", "chelsea.png")
UNRELATED = (
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "motorcycle_left.png",
    "grass.png",
)


@dataclass
class ChaosResult:
    """What the check saw."""

    uploads: int
    verdicts: int = 0
    verdict_records: int = 0
    missing_verdicts: int = 0
    expected_actions: int = 0
    distinct_actions: int = 0
    action_records: int = 0
    missing_actions: int = 0
    unexpected_actions: int = 0
    wrong_actions: int = 0
    unsigned_actions: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    required_kills: int = 3  # SIGKILLs each service must have survived for the run to count
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Each service killed often enough, no upload without a verdict, the exact actions."""
        return (
            all(self.kills.get(name, 0) >= self.required_kills for name in SERVICES)
            and self.missing_verdicts == 0
            and self.missing_actions == 0
            and self.unexpected_actions == 0
            and self.wrong_actions == 0
            and self.unsigned_actions == 0
        )

    def rows(self) -> list[tuple[str, Any, str]]:
        """The report as (measure, value, requirement) rows."""
        return [
            ("uploads published", self.uploads, ""),
            ("verdicts received (distinct upload ids)", self.verdicts, f"= {self.uploads}"),
            ("uploads without a verdict", self.missing_verdicts, "must be 0"),
            (
                "repeated verdict deliveries",
                self.verdict_records - self.verdicts,
                "allowed, counted",
            ),
            ("expected action ids", self.expected_actions, ""),
            ("distinct action ids received", self.distinct_actions, f"= {self.expected_actions}"),
            ("expected actions missing", self.missing_actions, "must be 0"),
            ("unexpected action ids", self.unexpected_actions, "must be 0"),
            (
                "repeated action deliveries",
                self.action_records - self.distinct_actions,
                "allowed, counted",
            ),
            ("wrong actions", self.wrong_actions, "must be 0"),
            ("actions failing signature check", self.unsigned_actions, "must be 0"),
            *(
                (f"SIGKILLs of {name}", self.kills.get(name, 0), f">= {self.required_kills}")
                for name in SERVICES
            ),
            ("seconds", round(self.seconds, 1), ""),
        ]


def run_chaos(
    deployment: Deployment, uploads: int, kills: int, seed: int = 1, stall_s: float = 120.0
) -> ChaosResult:
    """Publish ``uploads``, kill each service ``kills`` times while they are processed, check.

    The run ends when every upload has its verdict, or when no new verdict has come for
    ``stall_s`` (a lost upload shows as a stall, however long the whole run takes). It passes
    only if every service really was killed ``kills`` times.
    """
    rng = random.Random(seed)
    entries = deployment.register("chaos", {name: photo_bytes(name) for name in PROTECTED})
    copies, unrelated = _media(deployment)
    expected: dict[str, tuple[str, str]] = {}  # action id -> (content id, entry id)
    upload_ids = []
    for number in range(uploads):
        content_id = f"chaos-{number:06d}"
        if number % 10 == 0:
            name, url = copies[number // 10 % len(copies)]
            expected[event_id("action", content_id, entries[name], "remove")] = (
                content_id,
                entries[name],
            )
        else:
            url = unrelated[number % len(unrelated)]
        upload_ids.append(
            deployment.upload_event(
                UploadReceived(content_id=content_id, media_url=url), flush=False
            )
        )
    deployment.flush()
    started = time.monotonic()
    deployment.pipeline.start()
    killed = _run_with_kills(deployment, set(upload_ids), kills, rng, stall_s)
    seconds = time.monotonic() - started
    return _check(
        deployment,
        upload_ids,
        expected,
        ChaosResult(len(upload_ids), kills=dict(killed), required_kills=kills, seconds=seconds),
    )


def _media(deployment: Deployment) -> tuple[list[tuple[str, str]], list[str]]:
    """Files under the media root: exact and re-encoded copies, and unrelated photos."""
    copies = []
    for name in PROTECTED:
        original = photo_bytes(name)
        recoded = io.BytesIO()
        Image.open(io.BytesIO(original)).convert("RGB").save(recoded, "JPEG", quality=85)
        for variant, data in (("exact", original), ("jpeg85", recoded.getvalue())):
            path = deployment.media_root / f"{variant}-{name}"
            path.write_bytes(data)
            copies.append((name, path.as_uri()))
    unrelated = []
    for name in UNRELATED:
        path = deployment.media_root / f"unrelated-{name}"
        path.write_bytes(photo_bytes(name))
        unrelated.append(path.as_uri())
    return copies, unrelated


def _run_with_kills(
    deployment: Deployment, upload_ids: set[str], kills: int, rng: random.Random, stall_s: float
) -> Counter[str]:
    """Read output until done or stalled, SIGKILLing services as progress passes random marks."""
    marks = sorted((rng.uniform(0.05, 0.85), name) for name in SERVICES for _ in range(kills))
    killed: Counter[str] = Counter()
    quiet_since = progressed_at = time.monotonic()
    answered = 0
    while time.monotonic() - progressed_at < stall_s:
        if deployment.read(timeout_ms=100):
            quiet_since = time.monotonic()
        if len(upload_ids & deployment.verdicts.keys()) > answered:
            answered, progressed_at = len(upload_ids & deployment.verdicts.keys()), time.monotonic()
        progress = answered / len(upload_ids)
        while marks and progress >= marks[0][0]:
            _, name = marks.pop(0)
            deployment.pipeline.kill(name)
            time.sleep(rng.uniform(0.0, 0.5))
            deployment.pipeline.restart(name)
            killed[name] += 1
        if not marks and progress == 1.0 and time.monotonic() - quiet_since > 3.0:
            break
    return killed


def _check(
    deployment: Deployment,
    upload_ids: list[str],
    expected: dict[str, tuple[str, str]],
    result: ChaosResult,
) -> ChaosResult:
    answered = set(upload_ids) & deployment.verdicts.keys()
    result.verdicts = len(answered)
    result.verdict_records = sum(len(deployment.verdicts[u]) for u in answered)
    result.missing_verdicts = len(upload_ids) - len(answered)
    received = set(deployment.action_ids)
    result.expected_actions = len(expected)
    result.distinct_actions = len(received)
    result.action_records = len(deployment.action_ids)
    result.missing_actions = len(expected.keys() - received)
    result.unexpected_actions = len(received - expected.keys())
    result.wrong_actions = sum(
        1
        for id_, action in zip(deployment.action_ids, deployment.actions, strict=True)
        if expected.get(id_) != (action.content_id, action.entry_id) or action.action != "remove"
    )
    result.unsigned_actions = deployment.unsigned_actions
    return result
