"""``eraser bench pipeline``: throughput, latency, CPU and memory of the whole pipeline.

The real services run as processes on the broker: ``--ingest-processes`` ingest processes (by
default one per core), the matcher, the actions service. The media mix is made from the accuracy
benchmark's photographs and the large wallpapers in the same package cache: JPEG, PNG and WebP
from 512 px to 12 MP, passed by ``file://`` reference. The registry holds a 1M-entry snapshot
(random PDQ hashes) plus a few registered photographs, of which about 1% of uploads are copies.

Three measurements: the ceiling (decode and compute every signal, nothing else, with the same
number of processes and the same files); the pipeline's maximum throughput (all uploads
published at once, timed to the last verdict); and latency at a fixed offered rate, half the
maximum by default, for ``--seconds`` (600 for the ten-minute memory check), sampling RSS
every 10 s.
"""

from __future__ import annotations

import glob
import io
import json
import multiprocessing
import os
import random
import re
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench import dataset
from services.bench.deployment import Deployment
from services.bench.registry import _free_port
from services.ingest.decoding import decode
from services.ingest.hashing import digests
from services.ingest.signals import DECODE_SIDE, SignalModels, image_signals
from services.matcher.building import bulk
from services.pipeline import Pipeline, http_ports, instances
from services.shared.schemas import UploadReceived
from services.shared.topics import ensure_topics
from services.streams import EventReader

# (format, longer side in pixels, share of uploads): a platform's mix, by count.
MIX = (
    ("JPEG", 512, 0.15),
    ("JPEG", 1280, 0.30),
    ("JPEG", 2048, 0.15),
    ("JPEG", 4032, 0.10),
    ("PNG", 512, 0.10),
    ("PNG", 1280, 0.05),
    ("WEBP", 1024, 0.10),
    ("WEBP", 2048, 0.05),
)
_CLASSES = [f"{fmt} {side} px" for fmt, side, _ in MIX] + ["copy"]
REGISTERED = 10
MATCHING_SHARE = 0.01


@dataclass
class Media:
    """The files uploads point at, and which of them are copies of registered photos."""

    files: list[Path]
    weights: list[float]
    copies: list[Path]
    registered: dict[str, bytes] = field(default_factory=dict)


def prepare_media(cache: Path, root: Path, per_class: int = 6) -> Media:
    """Files of every class of the mix, made from photographs out of the package cache."""
    photos = dataset.prepare(cache)
    large = [
        Path(p)
        for p in glob.glob(str(cache / "packages" / "**" / "*.jpg"), recursive=True)
        if min(Image.open(p).size) >= 1500
    ]
    rng = random.Random(7)
    files, weights = [], []
    for number, (fmt, side, share) in enumerate(MIX):
        sources = large if side > 1280 and large else [Path(p.path) for p in photos]
        for index in range(per_class):
            image = Image.open(rng.choice(sources)).convert("RGB")
            scale = side / max(image.size)
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
            )
            path = root / f"mix-{number}-{index}.{fmt.lower()}"
            image.save(path, fmt, **({"quality": 85} if fmt != "PNG" else {}))
            files.append(path)
            weights.append(share / per_class)
    media = Media(files, weights, [])
    for index, photo in enumerate(photos[-REGISTERED:]):
        data = Path(photo.path).read_bytes()
        media.registered[f"registered-{index}"] = data
        copy = root / f"copy-{index}.jpg"
        Image.open(io.BytesIO(data)).convert("RGB").save(copy, "JPEG", quality=80)
        media.copies.append(copy)
    return media


def media_class(path: Path) -> str:
    """The mix class a file was made for ("JPEG 4032 px"), or "copy" for a registered copy."""
    if path.name.startswith("copy-"):
        return "copy"
    fmt, side, _ = MIX[int(path.name.split("-")[1])]
    return f"{fmt} {side} px"


def plan(media: Media, uploads: int, seed: int = 11) -> list[Path]:
    """Which file each upload points at: the mix, with about 1% copies of registered photos."""
    rng = random.Random(seed)
    chosen = rng.choices(media.files, weights=media.weights, k=uploads)
    for index in range(0, uploads, round(1 / MATCHING_SHARE)):
        chosen[index] = media.copies[index % len(media.copies)]
    return chosen


_MODELS: SignalModels | None = None  # one per ceiling worker, built on first use


def _signals_of(item: tuple[Path, bool]) -> None:
    """Everything ingest computes for one file, nothing else (a ceiling worker)."""
    global _MODELS
    path, embeddings = item
    if _MODELS is None:
        _MODELS = SignalModels.load(embeddings=embeddings, keypoints=embeddings)  # as ingest does
    data = path.read_bytes()
    digests(data)
    image_signals(decode(data, 200_000_000, DECODE_SIDE).pixels, _MODELS)


def ceiling(files: list[Path], processes: int, embeddings: bool) -> float:
    """Uploads per second when only decoding and computing the signals, in ``processes``."""
    items = [(path, embeddings) for path in files]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_signals_of, items[: processes * 2])  # load the model in every worker
        started = time.perf_counter()
        pool.map(_signals_of, items, chunksize=4)
        return len(files) / (time.perf_counter() - started)


@dataclass
class Run:
    """What one phase of the pipeline measurement saw."""

    uploads: int
    seconds: float = 0.0
    verdict_latencies: list[float] = field(default_factory=list)
    action_latencies: list[float] = field(default_factory=list)
    verdict_latencies_by_class: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Uploads per second."""
        return self.uploads / self.seconds if self.seconds else 0.0

    def percentile(self, which: str, q: float) -> float:
        """A latency percentile in milliseconds."""
        values = self.verdict_latencies if which == "verdict" else self.action_latencies
        return float(np.percentile(values, q) * 1000) if values else float("nan")

    def verdict_percentiles_by_class(self) -> dict[str, dict[str, float]]:
        """p50 and p99 upload-to-verdict milliseconds of each media class, by class name."""
        return {
            kind: {f"p{q}": float(np.percentile(values, q) * 1000) for q in (50, 99)}
            for kind, values in sorted(
                self.verdict_latencies_by_class.items(), key=lambda item: _CLASSES.index(item[0])
            )
        }


class Driver:
    """Publishes uploads by file:// reference and times their verdicts and actions."""

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment
        self._reader = EventReader(
            deployment.kafka,
            [deployment.topics.verdicts, deployment.topics.actions],
            fetch_max_wait_ms=10,
        )
        self._sent: dict[str, float] = {}
        self._classes: dict[str, str] = {}
        self._verdicts: dict[str, float] = {}
        self._actions: dict[str, float] = {}

    def send(self, path: Path) -> str:
        """Publish one upload now; its id."""
        upload = UploadReceived(content_id=f"c-{uuid.uuid4().hex[:12]}", media_url=path.as_uri())
        upload_id = self._deployment.upload_event(upload, flush=False)
        self._sent[upload_id] = time.time()
        self._classes[upload_id] = media_class(path)
        return upload_id

    def flush(self) -> None:
        """Wait until the broker has everything sent."""
        self._deployment.flush()

    def collect(self, timeout_ms: int = 20) -> None:
        """Note the arrival time of whatever verdicts and actions came in.

        Only the upload id is read out of each record: the benchmark shares the cores with the
        pipeline, so its own work is kept small.
        """
        for topic, value in self._reader.read_raw(timeout_ms):
            arrived = time.time()
            upload_id = json.loads(value)["data"]["upload_id"]
            target = self._verdicts if topic == self._deployment.topics.verdicts else self._actions
            target.setdefault(upload_id, arrived)

    def wait(self, ids: list[str], timeout_s: float) -> None:
        """Collect until every id has a verdict."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not set(ids) <= self._verdicts.keys():
            self.collect()

    def result(self, ids: list[str], seconds: float) -> Run:
        """Latencies from each upload's event time to its verdict and action."""
        run = Run(len(ids), seconds)
        for upload_id in ids:
            if upload_id in self._verdicts:
                latency = self._verdicts[upload_id] - self._sent[upload_id]
                run.verdict_latencies.append(latency)
                run.verdict_latencies_by_class.setdefault(self._classes[upload_id], []).append(
                    latency
                )
            if upload_id in self._actions:
                run.action_latencies.append(self._actions[upload_id] - self._sent[upload_id])
        return run

    def close(self) -> None:
        """Close the reader."""
        self._reader.close()


def throughput(driver: Driver, files: list[Path]) -> Run:
    """Publish every upload at once; time from the first publish to the last verdict."""
    started = time.perf_counter()
    ids = [driver.send(path) for path in files]
    driver.flush()
    driver.wait(ids, timeout_s=1800)
    return driver.result(ids, time.perf_counter() - started)


def offered(
    driver: Driver,
    files: list[Path],
    rate: float,
    seconds: float,
    sample: Callable[[], None] | None = None,
) -> Run:
    """Publish at ``rate`` uploads per second for ``seconds``; latency under that load."""
    ids: list[str] = []
    started = time.perf_counter()
    next_sample = started
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        if len(ids) < due:
            while len(ids) < due:
                ids.append(driver.send(files[len(ids) % len(files)]))
            driver.flush()
        # Read until the next upload is due: a busy loop here would take CPU from the pipeline.
        until_next = (len(ids) / rate - (time.perf_counter() - started)) * 1000
        driver.collect(timeout_ms=max(1, min(100, int(until_next))))
        if sample is not None and time.perf_counter() >= next_sample:
            sample()
            next_sample += 10.0
    driver.wait(ids, timeout_s=120)
    return driver.result(ids, seconds)


def registry_snapshot(folder: Path, size: int) -> Path:
    """A snapshot of ``size`` random PDQ entries for the matcher to start from."""
    snapshots = folder / "snapshots"
    rng = np.random.default_rng(2026)
    codes = rng.integers(0, 2**63, (size, 4), dtype=np.uint64) * 2 + rng.integers(
        0, 2, (size, 4), dtype=np.uint64
    )
    arrays = {
        "ids": np.char.add(b"bench-", np.arange(size).astype("S10")),
        "bank": np.zeros(size, dtype=np.uint16),
        "pdq_key": np.arange(size, dtype=np.uint32),
    }
    snapshots.mkdir(parents=True, exist_ok=True)
    bulk(arrays, codes, ["bench"], {0: 0}, snapshots / "generation-1")
    return snapshots


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_seconds(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of each stage histogram a service exports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found: dict[str, list[float]] = {}
    for kind, stage, value in re.findall(
        r'eraser_\w+_stage_seconds_(sum|count)\{[^}]*\bstage="(\w+)"[^}]*\} ([0-9.e+-]+)', text
    ):
        found.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {stage: (total, count) for stage, (total, count) in found.items()}


def deploy(
    bootstrap: str, folder: Path, registry_size: int, processes: int, embeddings: bool = True
) -> tuple[Deployment, dict[str, int]]:
    """The deployment (not started) and the HTTP port of each process."""
    ports = {"ingest": _free_port(), "matcher": _free_port(), "actions": _free_port()}
    env = {
        "ERASER_MATCHER_SNAPSHOT_DIR": str(registry_snapshot(folder, registry_size)),
        "ERASER_INGEST_EMBEDDINGS": str(embeddings).lower(),
        **{f"ERASER_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()},
    }
    deployment = Deployment(bootstrap, folder, env=env, partitions=6)
    deployment.pipeline = Pipeline(deployment.env, instances(processes), log_dir=folder)
    return deployment, http_ports(instances(processes), deployment.env)


def wait_ready(ports: list[int], timeout_s: float = 600) -> None:
    """Until every service's /readyz answers 200."""
    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        port = pending[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.1)
    if pending:
        raise RuntimeError("services did not become ready")


@dataclass(frozen=True)
class Alone:
    """A matcher reading a backlog: how fast, and what each upload cost it."""

    uploads: int
    uploads_per_second: float
    cpu_ms_per_upload: float
    stage_ms_per_upload: dict[str, float]  # wall time, the process having a core to itself


def matcher_alone(deployment: Deployment, timeout_s: float = 600) -> Alone:
    """A second matcher, in a group of its own, reading every hashed upload so far at once.

    In the pipeline the matcher gets uploads one or two at a time, as fast as ingest hashes them,
    so each pays a whole poll, flush and send; this one has a backlog, so its batches are full:
    its cost per upload is the matcher's own at its maximum. Its verdicts go to a topic of their
    own that only this benchmark reads. Timed from its first verdict to its last.
    """
    topics = deployment.topics.model_copy(
        update={"verdicts": f"{deployment.topics.verdicts}.alone"}
    )
    ensure_topics(deployment.kafka, topics)
    reader = EventReader(deployment.kafka, [topics.hashes], fetch_max_wait_ms=10)
    hashed = sum(reader.end_offsets().values())
    reader.close()
    port = _free_port()
    env = {
        **deployment.env,
        "ERASER_TOPIC_VERDICTS": topics.verdicts,
        "ERASER_MATCHER_GROUP_ID": f"{deployment.env['ERASER_MATCHER_GROUP_ID']}-alone",
        "ERASER_MATCHER_HTTP_PORT": str(port),
    }
    logs = deployment.media_root.parent / "alone"
    logs.mkdir(exist_ok=True)
    matcher = Pipeline(env, ("matcher",), log_dir=logs)
    verdicts = EventReader(deployment.kafka, [topics.verdicts], fetch_max_wait_ms=10)
    try:
        pid = matcher.start().processes["matcher"].pid
        seen, first, deadline = 0, None, time.monotonic() + timeout_s
        while seen < hashed and time.monotonic() < deadline:
            arrived = len(verdicts.read_raw(timeout_ms=100))
            if arrived and first is None:
                first = (time.perf_counter(), cpu_seconds(pid), arrived)
            seen += arrived
        if first is None or seen < hashed:
            raise RuntimeError(f"the second matcher gave {seen} of {hashed} verdicts")
        seconds, cpu = time.perf_counter() - first[0], cpu_seconds(pid) - first[1]
        counted = seen - first[2]
        stages = {stage: total * 1000 / seen for stage, (total, _) in stage_seconds(port).items()}
        return Alone(seen, counted / seconds, cpu * 1000 / max(1, counted), stages)
    finally:
        verdicts.close()
        matcher.stop()
