"""The ``eraser`` command: run the pipeline, run one service, register, withdraw, demo, schemas."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from kafka.errors import KafkaTimeoutError
from pydantic import ValidationError

from services.admin.commands import add_commands as add_admin_commands
from services.client_commands import add_commands as add_client_commands
from services.shared import logging as eraser_logging
from services.shared.config import KafkaSettings, explain
from services.shared.connectivity import unreachable
from services.shared.errors import UsageError

SCHEMA_DIR = Path("docs/schemas")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the sub-command; the exit code.

    A failure the user caused and can fix (a missing file, an unknown id, no broker, a wrong
    setting) ends with one line per problem on stderr and exit code 2, never a traceback.
    """
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except UsageError as error:
        print("\n".join(f"eraser: {line}" for line in str(error).splitlines()), file=sys.stderr)
    except ValidationError as error:  # settings read by the command itself
        print("\n".join(f"eraser: {line}" for line in explain(error)), file=sys.stderr)
    except KafkaTimeoutError:  # the broker went away after the check, or never answered Kafka
        print(f"eraser: {unreachable(KafkaSettings())}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, naming the sub-command and where its usage is."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` and exit 2."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eraser", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run ingest, matcher and actions (embedded broker if "
        "KAFKA_BOOTSTRAP_SERVERS is unset)",
    )
    run.add_argument(
        "--ingest-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="ingest processes (decoding is CPU-bound; default: one per core)",
    )
    run.set_defaults(command=_run)
    for service in ("ingest", "matcher", "actions", "admin"):
        one = commands.add_parser(service, help=f"run the {service} service alone")
        one.set_defaults(command=_service(service))

    topics = commands.add_parser("topics", help="create the topics that do not exist yet")
    topics.set_defaults(command=_topics)

    add_admin_commands(commands)
    add_client_commands(commands)

    demo = commands.add_parser(
        "demo", help="run the pipeline on real photos and print the verdicts"
    )
    demo.set_defaults(command=_demo)

    bench = commands.add_parser("bench", help="benchmarks: print a table and write JSON")
    benches = bench.add_subparsers(required=True, metavar="BENCHMARK")
    chaos = benches.add_parser(
        "chaos", help="SIGKILL every service while uploads flow; check delivery"
    )
    chaos.add_argument("--uploads", type=int, default=10_000)
    chaos.add_argument("--kills", type=int, default=3, help="SIGKILLs per service")
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--json", type=Path, default=Path("results/chaos.json"))
    chaos.set_defaults(command=_bench_chaos)
    registry = benches.add_parser("registry", help="the matcher's registry with N PDQ entries")
    registry.add_argument("--size", type=int, default=1_000_000)
    registry.add_argument("--json", type=Path, default=None, help="default results/registry-N.json")
    registry.set_defaults(command=_bench_registry)
    accuracy = benches.add_parser("accuracy", help="recall and precision per edit class")
    accuracy.add_argument(
        "--cache",
        type=Path,
        default=Path(".cache/accuracy"),
        help="where the photos from packages are kept (never committed)",
    )
    accuracy.add_argument("--workers", type=int, default=2)
    accuracy.add_argument("--json", type=Path, default=Path("results/accuracy.json"))
    accuracy.add_argument("--originals", type=int, default=None, help="fewer (development)")
    accuracy.add_argument(
        "--pool-limit", type=int, default=None, help="fewer pool distractors (development)"
    )
    accuracy.set_defaults(command=_bench_accuracy)
    pipe = benches.add_parser("pipeline", help="throughput, latency, CPU and memory end to end")
    pipe.add_argument("--cache", type=Path, default=Path(".cache/accuracy"))
    pipe.add_argument("--uploads", type=int, default=2000)
    pipe.add_argument("--ingest-processes", type=int, default=os.cpu_count() or 1)
    pipe.add_argument("--registry-size", type=int, default=1_000_000)
    pipe.add_argument("--rate", type=float, default=None, help="offered rate (default: half max)")
    pipe.add_argument("--seconds", type=float, default=60.0, help="how long to offer the rate")
    pipe.add_argument(
        "--no-embeddings",
        action="store_true",
        help="PDQ and digests only (ERASER_INGEST_EMBEDDINGS=false)",
    )
    pipe.add_argument("--json", type=Path, default=Path("results/pipeline.json"))
    pipe.set_defaults(command=_bench_pipeline)
    hostile = benches.add_parser("hostile", help="the hostile-input corpus through the pipeline")
    hostile.add_argument("--json", type=Path, default=Path("results/hostile.json"))
    hostile.set_defaults(command=_bench_hostile)

    faces = benches.add_parser("faces", help="the face tier: recall, false matches, cost, scale")
    faces.add_argument("--cache", type=Path, default=Path(".cache/faces"))
    faces.add_argument("--accuracy-cache", type=Path, default=Path(".cache/accuracy"))
    faces.add_argument(
        "--index-size", type=int, action="append", default=None, help="registered faces (repeat)"
    )
    faces.add_argument("--json", type=Path, default=Path("results/faces.json"))
    faces.set_defaults(command=_bench_faces)
    videos = benches.add_parser("video", help="vPDQ conformance, recall per edit, CPU per minute")
    videos.add_argument("--cache", type=Path, default=Path(".cache/video"), help="videos made here")
    videos.add_argument(
        "--photos", type=Path, default=Path(".cache/accuracy"), help="the accuracy bench's cache"
    )
    videos.add_argument(
        "--threatexchange",
        type=Path,
        default=Path(".cache/threatexchange"),
        help="facebook/ThreatExchange's tmk/sample-videos and vpdq/sample-hashes, if fetched",
    )
    videos.add_argument("--workers", type=int, default=2)
    videos.add_argument("--json", type=Path, default=Path("results/video.json"))
    videos.set_defaults(command=_bench_video)
    conformance = benches.add_parser("pdq", help="eraser's PDQ against Meta's reference code")
    conformance.add_argument("--cache", type=Path, default=Path(".cache/accuracy"))
    conformance.add_argument("--json", type=Path, default=Path("results/pdq.json"))
    conformance.set_defaults(command=_bench_pdq)

    schemas = commands.add_parser("schemas", help="write the JSON Schema of the public events")
    schemas.add_argument("--out", type=Path, default=SCHEMA_DIR)
    schemas.add_argument("--check", action="store_true", help="fail if the files are out of date")
    schemas.set_defaults(command=_schemas)
    return parser


def _service(name: str) -> Callable[[argparse.Namespace], int]:
    def run_one(args: argparse.Namespace) -> int:
        module = __import__(f"services.{name}.__main__", fromlist=["main"])
        return int(module.main())

    return run_one


def _run(args: argparse.Namespace) -> int:
    from services.running import run

    eraser_logging.configure("run")
    return run(args.ingest_processes)


def _topics(args: argparse.Namespace) -> int:
    from services.shared.config import KafkaSettings, TopicSettings
    from services.shared.topics import ensure_topics

    for name in ensure_topics(KafkaSettings(), TopicSettings()):
        print(f"created\t{name}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo()


def _bench_chaos(args: argparse.Namespace) -> int:
    from services.bench import commands

    return commands.chaos(args.uploads, args.kills, args.seed, args.json)


def _bench_registry(args: argparse.Namespace) -> int:
    from services.bench import commands

    path = args.json or Path(f"results/registry-{args.size}.json")
    return commands.registry(args.size, path)


def _bench_accuracy(args: argparse.Namespace) -> int:
    from services.bench import commands

    return commands.accuracy(args.cache, args.workers, args.json, args.originals, args.pool_limit)


def _bench_pipeline(args: argparse.Namespace) -> int:
    from services.bench import commands

    return commands.pipeline(
        args.cache,
        args.uploads,
        args.ingest_processes,
        args.registry_size,
        args.rate,
        args.seconds,
        args.json,
        not args.no_embeddings,
    )


def _bench_hostile(args: argparse.Namespace) -> int:
    from services.bench import commands

    return commands.hostile(args.json)


def _bench_video(args: argparse.Namespace) -> int:
    from services.bench import commands

    folder = args.threatexchange if args.threatexchange.is_dir() else None
    return commands.video(args.cache, args.photos, folder, args.workers, args.json)


def _bench_faces(args: argparse.Namespace) -> int:
    from services.bench import faces_report

    sizes = args.index_size or [1_000_000]
    return faces_report.run(args.cache, args.accuracy_cache, sizes, args.json)


def _bench_pdq(args: argparse.Namespace) -> int:
    from services.bench import pdq_conformance

    return pdq_conformance.run(args.cache, args.json)


def _schemas(args: argparse.Namespace) -> int:
    from services.shared.schemas import PUBLIC_EVENTS, CloudEvent

    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for model in PUBLIC_EVENTS:
        schema = CloudEvent[model].model_json_schema()  # type: ignore[valid-type]
        schema["properties"]["type"]["const"] = model.TYPE
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:eraser:schema:{model.TYPE}",
            **schema,
            "title": model.TYPE,
        }
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = args.out / f"{model.TYPE}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run `eraser schemas`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
