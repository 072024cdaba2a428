"""``eraser bench registry --size N``: how the matcher's registry behaves with N PDQ entries.

The N entries are random 256-bit PDQ hashes, built straight into a generation snapshot (as the
matcher's own compaction would write it): pushing millions of registrations through a broker is
a different benchmark. Everything after that runs the real thing: the index is searched in
process for latency and recall (against FAISS brute force over all N), then the real matcher
process starts from the snapshot plus a registry-topic tail on the broker, answers hashed uploads
sent to it, and takes a registration and a withdrawal while running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from services.bench.deployment import Deployment
from services.matcher.building import bulk
from services.pipeline import Pipeline
from services.shared.kafka import make_producer
from services.shared.schemas import EntryRegistered, MediaHashed, Signals, encode, new_event, now

TAIL = 10_000  # registrations published after the snapshot, replayed on restart
NEAR, RANDOM = 500, 500  # recall queries: near a registered hash (0-31 bits off), and anywhere


def run(size: int, bootstrap: str, folder: Path, out: Callable[[str], None]) -> dict[str, Any]:
    """Measure; the results by name."""
    rng = np.random.default_rng(2026)
    codes = rng.integers(0, 2**63, (size, 4), dtype=np.uint64) * 2 + rng.integers(
        0, 2, (size, 4), dtype=np.uint64
    )
    results: dict[str, Any] = {"size": size}
    snapshots = folder / "snapshots"
    results |= _build(codes, snapshots / "generation-1", out)
    results |= _search(codes, snapshots / "generation-1", rng, out)
    results |= _serve(codes, bootstrap, folder, snapshots, rng, out)
    results |= _compaction(snapshots, out)
    return results


def _compaction(snapshots: Path, out: Callable[[str], None]) -> dict[str, Any]:
    """Compact the snapshot plus 1,000 new entries, in a fresh process, for its time and memory."""
    script = (
        "import json, sys, time; from pathlib import Path; import numpy as np\n"
        "from services.bench.registry import compact_once\n"
        "print(json.dumps(compact_once(Path(sys.argv[1]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(snapshots)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out(
        f"compaction took {measured['compaction_seconds']:.1f} s, peak RSS "
        f"{measured['compaction_peak_rss_bytes'] / 2**20:.0f} MiB, of which anonymous "
        f"{measured['compaction_peak_anonymous_bytes'] / 2**20:.0f} MiB"
    )
    return measured


def compact_once(snapshots: Path) -> dict[str, Any]:
    """Load the newest snapshot, add 1,000 entries, compact once; seconds and peak RSS."""
    from services.matcher.registry import Registry
    from services.matcher.snapshots import load_latest

    registry = Registry(load_latest(snapshots), snapshots)
    rng = np.random.default_rng(7)
    for n in range(1000):
        code = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
        registry.register(
            EntryRegistered(entry_id=f"compact-{n}", bank="bench", signals=Signals(pdq=[code]))
        )
    anonymous = [0]
    done = threading.Event()

    def sample() -> None:  # the kernel keeps a peak of all RSS only; sample the anonymous part
        while not done.wait(0.02):
            anonymous[0] = max(anonymous[0], _rss(os.getpid())["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    registry.compact({0: 0}, background=False)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "compaction_seconds": seconds,
        "compaction_peak_rss_bytes": _rss(os.getpid())["VmHWM"],
        "compaction_peak_anonymous_bytes": anonymous[0],
    }


def _build(codes: np.ndarray, target: Path, out: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    size = len(codes)
    arrays = {
        "ids": np.char.add(b"bench-", np.arange(size).astype("S10")),
        "bank": np.zeros(size, dtype=np.uint16),
        "sha256": np.zeros(size, dtype="S32"),
        "md5": np.zeros(size, dtype="S16"),
        "pdq_key": np.arange(size, dtype=np.uint32),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    bulk(arrays, codes, ["bench"], {0: 0}, target)
    seconds = time.perf_counter() - started
    snapshot_bytes = sum(p.stat().st_size for p in target.iterdir())
    out(f"built and saved the generation in {seconds:.1f} s ({snapshot_bytes / 2**20:.0f} MiB)")
    return {"build_seconds": seconds, "snapshot_bytes": snapshot_bytes}


def _queries(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    near = codes[rng.integers(0, len(codes), NEAR)].copy()
    for row in near:
        for bit in rng.choice(256, int(rng.integers(0, 32)), replace=False):
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    far = rng.integers(0, 2**63, (RANDOM, 4), dtype=np.uint64)
    return np.concatenate([near, far])


def _search(
    codes: np.ndarray, snapshot: Path, rng: np.random.Generator, out: Callable[[str], None]
) -> dict[str, Any]:
    from services.matcher.storage import load

    index = load(snapshot).pdq
    queries = _queries(codes, rng)
    found = index.search(queries, 31)
    brute = faiss.IndexBinaryFlat(256)
    brute.add(np.ascontiguousarray(codes).view(np.uint8).reshape(-1, 32))
    limits, _, rows = brute.range_search(
        np.ascontiguousarray(queries).view(np.uint8).reshape(-1, 32), 32
    )
    expected = {(q, int(r)) for q in range(len(queries)) for r in rows[limits[q] : limits[q + 1]]}
    got = set(zip(found[0].tolist(), found[1].tolist(), strict=True))
    del brute
    single = [_timed(index.search, queries[i : i + 1], 31) for i in range(300)]
    batched = [
        _timed(index.search, queries[i : i + 512], 31) / 512
        for i in range(0, len(queries) - 511, 64)
    ]
    recall = len(got & expected) / len(expected) if expected else 1.0
    out(f"recall {recall:.4f} over {len(expected)} true matches, {len(got - expected)} extra")
    return {
        "recall": recall,
        "true_matches": len(expected),
        "extra_matches": len(got - expected),
        "query_ms_single_p50": _ms(single, 50),
        "query_ms_single_p99": _ms(single, 99),
        "query_ms_batched_p50": _ms(batched, 50),
        "query_ms_batched_p99": _ms(batched, 99),
    }


def _serve(
    codes: np.ndarray,
    bootstrap: str,
    folder: Path,
    snapshots: Path,
    rng: np.random.Generator,
    out: Callable[[str], None],
) -> dict[str, Any]:
    port = _free_port()
    deployment = Deployment(
        bootstrap,
        folder,
        env={"ERASER_MATCHER_SNAPSHOT_DIR": str(snapshots), "ERASER_MATCHER_HTTP_PORT": str(port)},
    )
    producer = make_producer(deployment.kafka)
    tail = rng.integers(0, 2**63, (TAIL, 4), dtype=np.uint64)
    _publish_registrations(producer, deployment, tail)
    matcher = Pipeline(deployment.env, services=("matcher",), log_dir=folder)
    try:
        started = time.perf_counter()
        matcher.start()
        _wait_ready(port)
        restart = time.perf_counter() - started
        out(f"matcher ready {restart:.1f} s after start (snapshot + {TAIL} tail records)")
        _send(producer, deployment, _queries(codes, rng)[:400])
        _send(producer, deployment, tail[:100])
        rss = _rss(matcher.processes["matcher"].pid)
        fresh = rng.integers(0, 2**63, (1, 4), dtype=np.uint64)
        registered = _until(
            producer,
            deployment,
            fresh,
            "match",
            lambda: _publish_registrations(producer, deployment, fresh, "fresh"),
        )
        withdrawn = _until(
            producer,
            deployment,
            fresh,
            "clean",
            lambda: _tombstone(producer, deployment, "fresh-0"),
        )
        rss_after = _rss(matcher.processes["matcher"].pid)
    finally:
        matcher.stop()
        producer.close()
        deployment.close()
    out(f"registration matched after {registered:.2f} s, withdrawal after {withdrawn:.2f} s")
    return {
        "restart_seconds": restart,
        "tail_records": TAIL,
        "rss_bytes": rss["VmRSS"],
        "peak_rss_bytes": max(rss["VmHWM"], rss_after["VmHWM"]),
        "registration_to_match_seconds": registered,
        "withdrawal_to_no_match_seconds": withdrawn,
    }


def _publish_registrations(
    producer: Any, deployment: Deployment, codes: np.ndarray, prefix: str = "tail"
) -> None:
    for n, code in enumerate(codes):
        entry = EntryRegistered(
            entry_id=f"{prefix}-{n}", bank="bench", signals=Signals(pdq=[code.tobytes().hex()])
        )
        event = new_event(entry, id=str(uuid.uuid4()), source="urn:eraser:bench")
        producer.send(deployment.topics.registry, key=entry.entry_id.encode(), value=encode(event))
    producer.flush()


def _tombstone(producer: Any, deployment: Deployment, entry_id: str) -> None:
    producer.send(deployment.topics.registry, key=entry_id.encode(), value=None)
    producer.flush()


def _send(producer: Any, deployment: Deployment, codes: np.ndarray) -> list[str]:
    """Hashed uploads straight onto the matcher's input; their upload ids, once all answered."""
    ids = []
    for code in codes:
        upload_id = str(uuid.uuid4())
        hashes = [code.tobytes().hex()] * 8
        hashed = MediaHashed(
            upload_id=upload_id,
            content_id=upload_id,
            uploaded_at=now(),
            sha256="0" * 64,
            md5="0" * 32,
            pdq=hashes,
            pdq_quality=100,
            width=1,
            height=1,
            format="PNG",
        )
        event = new_event(hashed, id=upload_id, source="urn:eraser:bench")
        producer.send(deployment.topics.hashes, key=upload_id.encode(), value=encode(event))
        ids.append(upload_id)
    producer.flush()
    deployment.wait_for_verdicts(ids, timeout_s=120)
    return ids


def _until(
    producer: Any,
    deployment: Deployment,
    code: np.ndarray,
    verdict: str,
    change: Callable[[], None],
) -> float:
    """Make ``change``, then probe every 50 ms until the verdict for ``code`` is ``verdict``."""
    started = time.perf_counter()
    change()
    while time.perf_counter() - started < 60:
        (upload_id,) = _send(producer, deployment, code)
        if deployment.verdicts[upload_id][0].verdict == verdict:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"no {verdict} verdict within 60 s")


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the matcher did not become ready")


def _rss(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _timed(search: Callable[..., Any], queries: np.ndarray, radius: int) -> float:
    started = time.perf_counter()
    search(queries, radius)
    return time.perf_counter() - started


def _ms(seconds: list[float], percentile: int) -> float:
    return float(np.percentile(seconds, percentile) * 1000)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
