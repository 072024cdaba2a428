"""``eraser bench ...``: benchmarks that print a table and write the same numbers as JSON.

Each runs on the embedded broker, or on the cluster in KAFKA_BOOTSTRAP_SERVERS when it is set.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from services.bench.chaos import run_chaos
from services.bench.deployment import Deployment
from services.bench.hostile import CORPUS_ENV, corpus, default_canary, run_corpus
from services.bench.origin import Origin
from services.bench.registry import _rss
from services.bench.report import table, write_json
from services.shared.broker import EmbeddedBroker

Out = Callable[[str], None]
MEMORY_LIMIT = 1024**3


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """The bootstrap servers to use: KAFKA_BOOTSTRAP_SERVERS, or a fresh embedded broker."""
    with broker_process() as (bootstrap, _):
        yield bootstrap


@contextlib.contextmanager
def broker_process() -> Iterator[tuple[str, int | None]]:
    """The bootstrap servers, and the broker's process id when it is the embedded one."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
        return
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap_servers, embedded.pid


def chaos(uploads: int, kills: int, seed: int, json_path: Path, out: Out = print) -> int:
    """Run the chaos check and report it; 0 if it passed."""
    session_env = {"KAFKA_SESSION_TIMEOUT_MS": "3000"}  # notice killed members sooner
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="eraser-chaos-") as folder:
        deployment = Deployment(bootstrap, Path(folder), env=session_env, partitions=6)
        try:
            result = run_chaos(deployment, uploads, kills, seed)
        finally:
            deployment.close()
    out(table(("measure", "value", "requirement"), result.rows()))
    out(f"chaos check {'PASSED' if result.passed else 'FAILED'}")
    write_json(
        json_path,
        "chaos",
        {
            "uploads": uploads,
            "kills_per_service": kills,
            "seed": seed,
            "passed": result.passed,
            "result": vars(result),
        },
    )
    return 0 if result.passed else 1


def hostile(json_path: Path, out: Out = print) -> int:
    """Run the hostile-input corpus and report it; 0 if every case passed."""
    canary = default_canary()
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="eraser-hostile-") as folder:
        origin = Origin(canary)
        deployment = Deployment(bootstrap, Path(folder), env=CORPUS_ENV)
        try:
            deployment.register("bench", {"coffee": _coffee()})
            deployment.pipeline.start()
            cases = corpus(deployment.media_root, origin, int(CORPUS_ENV["ERASER_MAX_MEDIA_BYTES"]))
            outcomes, peak = run_corpus(deployment, cases, canary)
        finally:
            deployment.close()
            origin.close()
    rows = [
        (
            o.case.name,
            o.case.expected,
            o.verdict or "-",
            o.dead_letter or "-",
            o.reason or "-",
            "ok" if o.canary_ok else "MISSED",
            "pass" if o.passed else "FAIL",
        )
        for o in outcomes
    ]
    out(
        table(
            ("case", "expected", "verdict", "dead letter", "reason", "next upload", "result"), rows
        )
    )
    passed = sum(o.passed for o in outcomes)
    out(
        f"{passed}/{len(outcomes)} cases passed; ingest peak RSS {peak / 2**20:.0f} MiB "
        f"(limit {MEMORY_LIMIT / 2**20:.0f} MiB); no service restarted"
    )
    write_json(
        json_path,
        "hostile",
        {
            "cases": len(outcomes),
            "passed": passed,
            "ingest_peak_rss_bytes": peak,
            "outcomes": [
                {
                    "case": o.case.name,
                    "expected": o.case.expect,
                    "expected_error": o.case.error,
                    "verdict": o.verdict,
                    "dead_letter": o.dead_letter,
                    "reason": o.reason,
                    "canary_ok": o.canary_ok,
                    "passed": o.passed,
                }
                for o in outcomes
            ],
        },
    )
    return 0 if passed == len(outcomes) and peak < MEMORY_LIMIT else 1


def _coffee() -> bytes:
    from services.samples import photo_bytes

    return photo_bytes("coffee.png")


def registry(size: int, json_path: Path, out: Out = print) -> int:
    """Measure the registry at ``size`` entries and report it; 0 if every target was met."""
    from services.bench import registry as bench

    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="eraser-registry-") as folder:
        results = bench.run(size, bootstrap, Path(folder), out)
    targets: dict[str, tuple[str, Callable[[float], str], float | None, str]] = {
        "peak_rss_bytes": (
            "matcher peak RSS",
            lambda v: f"{v / 2**20:.0f} MiB",
            1024**3,
            "< 1 GiB",
        ),
        "recall": ("recall vs brute force", lambda v: f"{v:.4f}", None, "= 1.0000"),
        "query_ms_batched_p50": ("query, batched of 512, p50", _ms, 2.0, "< 2 ms"),
        "query_ms_batched_p99": ("query, batched of 512, p99", _ms, None, ""),
        "query_ms_single_p50": ("query, one at a time, p50", _ms, None, ""),
        "query_ms_single_p99": ("query, one at a time, p99", _ms, None, ""),
        "restart_seconds": ("restart: snapshot + 10,000-record tail", _s, 30.0, "< 30 s"),
        "registration_to_match_seconds": ("registration to first match", _s, 10.0, "< 10 s"),
        "withdrawal_to_no_match_seconds": ("withdrawal to no match", _s, 10.0, "< 10 s"),
        "build_seconds": ("build and save the generation", _s, None, ""),
        "compaction_seconds": ("compaction (+1,000 entries), in the background", _s, None, ""),
        "compaction_peak_rss_bytes": ("peak RSS while compacting", _mib, None, ""),
        "compaction_peak_anonymous_bytes": (
            "... of it anonymous (not file-backed)",
            _mib,
            None,
            "",
        ),
        "snapshot_bytes": ("snapshot size", lambda v: f"{v / 2**20:.0f} MiB", None, ""),
    }
    rows, met = [], True
    for key, (label, show, limit, target) in targets.items():
        value = results[key]
        ok = (value == 1.0) if key == "recall" else (limit is None or value < limit)
        met = met and ok
        rows.append((label, show(value), target, "" if not target else "met" if ok else "MISSED"))
    out(f"registry with {size:,} PDQ entries")
    out(table(("measure", "value", "target", ""), rows))
    write_json(json_path, "registry", results)
    return 0 if met else 1


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _s(value: float) -> str:
    return f"{value:.2f} s"


def accuracy(
    cache: Path,
    workers: int,
    json_path: Path,
    originals: int | None = None,
    pool_limit: int | None = None,
    out: Out = print,
) -> int:
    """Measure recall per edit class, false matches per signal and actions; 0 if targets met."""
    from services.bench import accuracy as bench
    from services.bench.accuracy_report import report

    subset = {"originals": originals} if originals else {}
    results = bench.run(cache, workers, out, pool_limit=pool_limit, **subset)
    return 0 if report(results, json_path, out) else 1


def pipeline(
    cache: Path,
    uploads: int,
    processes: int,
    registry_size: int,
    rate: float | None,
    seconds: float,
    json_path: Path,
    embeddings: bool = True,
    out: Out = print,
) -> int:
    """Measure the pipeline end to end; 0 if every target was met."""
    from services.bench import pipeline as bench

    with (
        broker_process() as (bootstrap, broker_pid),
        tempfile.TemporaryDirectory(prefix="eraser-pipeline-") as folder,
    ):
        deployment, ports = bench.deploy(
            bootstrap, Path(folder), registry_size, processes, embeddings
        )
        try:
            media = bench.prepare_media(cache, deployment.media_root)
            deployment.register("bench", media.registered)
            files = bench.plan(media, uploads)
            out(
                f"{uploads} uploads over {len(media.files)} files; {processes} ingest processes; "
                f"registry of {registry_size:,} + {len(media.registered)} entries"
            )
            ceiling = bench.ceiling(files, processes, embeddings)
            out(f"ceiling (decode + signals only, {processes} processes): {ceiling:.1f} uploads/s")
            pdq_ceiling = bench.ceiling(files, processes, False) if embeddings else ceiling
            out(f"ceiling (decode + PDQ only): {pdq_ceiling:.1f} uploads/s")
            results = _measure_pipeline(
                bench, deployment, ports, files, rate, seconds, out, broker_pid
            )
            results["matcher_alone"] = bench.matcher_alone(deployment)
        finally:
            deployment.close()
    results["ceiling_uploads_per_second"] = ceiling
    results["pdq_ceiling_uploads_per_second"] = pdq_ceiling
    results["uploads"], results["ingest_processes"] = uploads, processes
    results["embeddings"] = embeddings
    return _report_pipeline(results, json_path, out)


def _measure_pipeline(
    bench: Any,
    deployment: Deployment,
    ports: dict[str, int],
    files: list[Path],
    rate: float | None,
    seconds: float,
    out: Out,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    deployment.pipeline.start()
    bench.wait_ready(list(ports.values()))
    pids = {name: p.pid for name, p in deployment.pipeline.processes.items()}
    pids["this benchmark (publishing, reading)"] = os.getpid()
    if broker_pid is not None:
        pids["embedded broker"] = broker_pid
    driver = bench.Driver(deployment)
    warm = [driver.send(path) for path in files[: 4 * len(ports)]]
    driver.flush()
    driver.wait(warm, timeout_s=300)
    cpu_before = {name: bench.cpu_seconds(pid) for name, pid in pids.items()}
    stages_before = {name: bench.stage_seconds(port) for name, port in ports.items()}
    maximum = bench.throughput(driver, files)
    out(f"maximum: {maximum.rate:.1f} uploads/s")
    cpu = {
        name: (bench.cpu_seconds(pid) - cpu_before[name]) * 1000 / len(files)
        for name, pid in pids.items()
    }
    stages: dict[str, float] = {}
    for name, port in ports.items():
        for stage, (total, count) in bench.stage_seconds(port).items():
            before_total, before_count = stages_before[name].get(stage, (0.0, 0.0))
            if count > before_count:
                stages[f"{name.partition('-')[0]}: {stage}"] = (
                    stages.get(f"{name.partition('-')[0]}: {stage}", 0.0)
                    + (total - before_total) * 1000
                )
    stages = {stage: ms / len(files) for stage, ms in stages.items()}
    offered_rate = rate or maximum.rate / 2
    samples: list[dict[str, int]] = []
    services = {n: p for n, p in pids.items() if n in deployment.pipeline.processes}
    cpu_before = {name: bench.cpu_seconds(pid) for name, pid in pids.items()}
    load = bench.offered(
        driver,
        files,
        offered_rate,
        seconds,
        sample=lambda: samples.append({n: _rss(p)["VmRSS"] for n, p in services.items()}),
    )
    offered_cpu = {
        name: (bench.cpu_seconds(pid) - cpu_before[name]) * 1000 / max(1, load.uploads)
        for name, pid in pids.items()
    }
    driver.close()
    peak = {name: _rss(pid)["VmHWM"] for name, pid in services.items()}
    return {
        "maximum": maximum,
        "offered": load,
        "offered_rate": offered_rate,
        "cpu_ms_per_upload": cpu,
        "offered_cpu_ms_per_upload": offered_cpu,
        "stage_ms_per_upload": stages,
        "peak_rss_bytes": peak,
        "rss_samples": samples,
        "offered_seconds": seconds,
    }


# Issue 14's targets: CPU per upload (ms, all processes), share of each ceiling, latency at half
# the maximum, RSS growth over the offered run.
PIPELINE_TARGETS = {
    "total_cpu_ms": 80.0,
    "matcher_cpu_ms": 5.0,
    "actions_cpu_ms": 1.0,
    "to_ceiling": 0.85,
    "to_pdq_ceiling": 0.55,
    "verdict_p99_ms": 150.0,
    "rss_growth": 0.10,
}
_BENCHMARK = "this benchmark (publishing, reading)"


def _report_pipeline(results: dict[str, Any], json_path: Path, out: Out) -> int:
    maximum, load = results["maximum"], results["offered"]
    targets = PIPELINE_TARGETS
    ratio = maximum.rate / results["ceiling_uploads_per_second"]
    pdq_ratio = maximum.rate / results["pdq_ceiling_uploads_per_second"]
    p99 = load.percentile("verdict", 99)
    cpu = results["cpu_ms_per_upload"]
    total_cpu = sum(cpu.values())
    samples = results["rss_samples"]
    alone = results["matcher_alone"]
    growth = {name: _rss_growth(samples, name) for name in (samples[0] if samples else {})}
    checks = {
        "total_cpu_ms": total_cpu <= targets["total_cpu_ms"],
        "matcher_cpu_ms": cpu.get("matcher", 0.0) <= targets["matcher_cpu_ms"],
        "actions_cpu_ms": cpu.get("actions", 0.0) <= targets["actions_cpu_ms"],
        "to_ceiling": ratio >= targets["to_ceiling"],
        "to_pdq_ceiling": pdq_ratio >= targets["to_pdq_ceiling"],
        "verdict_p99_ms": p99 <= targets["verdict_p99_ms"],
        "rss_growth": all(g <= targets["rss_growth"] for g in growth.values()),
    }

    def verdict(name: str) -> str:
        return "met" if checks[name] else "MISSED"

    cpu_targets = {"matcher": "matcher_cpu_ms", "actions": "actions_cpu_ms"}
    rows = [
        (
            "ceiling: decode + signals only",
            f"{results['ceiling_uploads_per_second']:.1f} /s",
            "",
            "",
        ),
        (
            "ceiling: decode + PDQ only",
            f"{results['pdq_ceiling_uploads_per_second']:.1f} /s",
            "",
            "",
        ),
        ("pipeline maximum throughput", f"{maximum.rate:.1f} /s", "", ""),
        ("throughput / ceiling", f"{ratio:.0%}", ">= 85%", verdict("to_ceiling")),
        ("throughput / PDQ-only ceiling", f"{pdq_ratio:.0%}", ">= 55%", verdict("to_pdq_ceiling")),
        (
            f"offered load ({results['offered_rate']:.1f} /s, {results['offered_seconds']:.0f} s)",
            f"{load.rate:.1f} /s",
            "",
            "",
        ),
        *(
            (
                f"upload to {which}, p{q}",
                f"{load.percentile(which, q):.0f} ms",
                "<= 150 ms" if (which, q) == ("verdict", 99) else "",
                verdict("verdict_p99_ms") if (which, q) == ("verdict", 99) else "",
            )
            for which in ("verdict", "action")
            for q in (50, 95, 99)
        ),
        *(
            (
                f"upload to verdict, p50 / p99: {kind}",
                f"{ms['p50']:.0f} / {ms['p99']:.0f} ms",
                "",
                "",
            )
            for kind, ms in load.verdict_percentiles_by_class().items()
        ),
        *(
            (
                f"CPU ms per upload: {name}",
                f"{ms:.1f}",
                f"<= {targets[cpu_targets[name]]:.0f}" if name in cpu_targets else "",
                verdict(cpu_targets[name]) if name in cpu_targets else "",
            )
            for name, ms in cpu.items()
        ),
        (
            "CPU ms per upload: all processes",
            f"{total_cpu:.1f}",
            f"<= {targets['total_cpu_ms']:.0f}",
            verdict("total_cpu_ms"),
        ),
        (
            "CPU ms per upload: all but this benchmark",
            f"{total_cpu - cpu.get(_BENCHMARK, 0):.1f}",
            "",
            "",
        ),
        (
            f"matcher alone, reading a backlog of {alone.uploads} hashed uploads",
            f"{alone.uploads_per_second:.0f} /s",
            "",
            "",
        ),
        (
            "CPU ms per upload: matcher alone (full batches)",
            f"{alone.cpu_ms_per_upload:.1f}",
            "",
            "",
        ),
        *(
            (f"stage ms per upload: matcher alone: {stage}", f"{ms:.1f}", "", "")
            for stage, ms in alone.stage_ms_per_upload.items()
        ),
        (
            "CPU ms per upload at the offered load: all processes",
            f"{sum(results['offered_cpu_ms_per_upload'].values()):.1f}",
            "",
            "",
        ),
        *(
            (f"stage ms per upload: {stage}", f"{ms:.1f}", "", "")
            for stage, ms in results["stage_ms_per_upload"].items()
        ),
        *(
            (f"peak RSS: {name}", f"{rss / 2**20:.0f} MiB", "", "")
            for name, rss in results["peak_rss_bytes"].items()
        ),
        *(
            (
                f"RSS over the offered run: {name}",
                f"{_rss_range(samples, name)}, +{growth[name]:.0%}",
                "<= +10%",
                "met" if growth[name] <= targets["rss_growth"] else "MISSED",
            )
            for name in growth
        ),
    ]
    out(table(("measure", "value", "target", ""), rows))
    write_json(
        json_path,
        "pipeline",
        {
            **{
                k: v for k, v in results.items() if k not in ("maximum", "offered", "matcher_alone")
            },
            "matcher_alone": vars(alone),
            "maximum_uploads_per_second": maximum.rate,
            "offered_uploads_per_second": load.rate,
            "latency_ms": {
                f"{which}_p{q}": load.percentile(which, q)
                for which in ("verdict", "action")
                for q in (50, 95, 99)
            },
            "verdict_latency_ms_by_media": load.verdict_percentiles_by_class(),
            "maximum_run_latency_ms": {
                f"verdict_p{q}": maximum.percentile("verdict", q) for q in (50, 99)
            },
            "throughput_to_ceiling": ratio,
            "throughput_to_pdq_ceiling": pdq_ratio,
            "total_cpu_ms_per_upload": total_cpu,
            "rss_growth": growth,
            "targets": targets,
            "targets_met": checks,
        },
    )
    return 0 if all(checks.values()) else 1


def _rss_growth(samples: list[dict[str, int]], name: str) -> float:
    """How far a process's RSS rose above the highest it reached in the run's first minute.

    Samples are 10 s apart: the first six are the first minute.
    """
    values = [sample[name] for sample in samples]
    first_minute = max(values[:6])
    return max(0.0, max(values) / first_minute - 1)


def _rss_range(samples: list[dict[str, int]], name: str) -> str:
    """First, lowest, highest and last RSS of a process over the samples (every 10 s)."""
    values = [sample[name] / 2**20 for sample in samples]
    return (
        f"{values[0]:.0f} -> {values[-1]:.0f} MiB "
        f"(min {min(values):.0f}, max {max(values):.0f}, {len(values)} samples)"
    )


def video(
    cache: Path,
    photos_cache: Path,
    threatexchange: Path | None,
    workers: int,
    json_path: Path,
    out: Out = print,
) -> int:
    """Run the video benchmark and report it; 0 if every target was met."""
    from services.bench import video as bench
    from services.bench import video_report

    started = time.monotonic()
    found = bench.run(cache, photos_cache, threatexchange, workers)
    met = video_report.report(found, out)
    out(f"targets: {'met' if met else 'MISSED'} ({time.monotonic() - started:.0f} s)")
    write_json(json_path, "video", {**video_report.as_json(found), "met": met})
    return 0 if met else 1
