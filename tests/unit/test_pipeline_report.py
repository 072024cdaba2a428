"""The pipeline benchmark's verdict on issue 14's targets, from measurements made up here."""

import json

from services.bench.commands import _report_pipeline
from services.bench.pipeline import Alone, Run

GOOD = {
    "ingest": 30.0,
    "matcher": 4.0,
    "actions": 0.8,
    "this benchmark (publishing, reading)": 5.0,
    "embedded broker": 6.0,
}


def results(cpu=GOOD, rss=(400, 410, 405, 400, 402, 401, 404), p99_s=0.12, maximum_s=25.0):
    maximum = Run(uploads=1000, seconds=maximum_s)
    offered = Run(uploads=500, seconds=60, verdict_latencies=[0.05] * 98 + [p99_s] * 2)
    return {
        "maximum": maximum,
        "offered": offered,
        "offered_rate": 20.0,
        "offered_seconds": 60,
        "ceiling_uploads_per_second": 44.0,
        "pdq_ceiling_uploads_per_second": 70.0,
        "cpu_ms_per_upload": dict(cpu),
        "offered_cpu_ms_per_upload": dict(cpu),
        "stage_ms_per_upload": {},
        "peak_rss_bytes": {"ingest": 420 * 2**20},
        "rss_samples": [{"ingest": mib * 2**20} for mib in rss],
        "matcher_alone": Alone(1000, 250.0, 3.5, {"search": 2.0, "verify": 1.0}),
    }


def report(tmp_path, **changes):
    lines = []
    code = _report_pipeline(results(**changes), tmp_path / "pipeline.json", lines.append)
    return code, "\n".join(lines), json.loads((tmp_path / "pipeline.json").read_text())


def test_every_target_met_exits_zero_and_says_so(tmp_path):
    code, table, saved = report(tmp_path)
    assert code == 0
    assert "MISSED" not in table
    assert saved["total_cpu_ms_per_upload"] == sum(GOOD.values())
    assert all(saved["targets_met"].values())


def test_each_missed_target_is_named_and_fails_the_run(tmp_path):
    code, table, saved = report(
        tmp_path,
        cpu={**GOOD, "ingest": 60.0, "matcher": 11.0},  # 82.8 ms in all
        rss=(400, 400, 400, 400, 400, 400, 460),  # +15% after the first minute
        p99_s=0.2,
        maximum_s=50.0,  # 20 uploads/s: under 85% of 44 and 55% of 70
    )
    assert code == 1
    missed = {name for name, met in saved["targets_met"].items() if not met}
    assert missed == {
        "matcher_cpu_ms",
        "total_cpu_ms",
        "rss_growth",
        "verdict_p99_ms",
        "to_ceiling",
        "to_pdq_ceiling",
    }
    assert table.count("MISSED") == 6
