"""``bench/pipeline.py`` dry-runs on a tiny clip: every figure of its section is there (timings not judged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pipeline import DEVICE_RATIOS, HEADING, conversions_needed, measure, report
from bench.sections import replace_section


def test_the_pipeline_benchmark_on_a_tiny_clip(tmp_path: Path) -> None:
    res = measure(tmp_path, seconds=0.4, sizes=("64x48",), speed_seconds=0.2, concurrent_seconds=0.2, ks=(1, 2))
    assert res.cpu_ms_per_frame > 0 and {"decode", "render", "encode"} <= set(res.stage_ms_per_frame)
    assert set(res.busy) == {"serial", "pipelined"}
    assert all(b.frames == 10 and 0 < b.device_share <= 1.05 for b in res.busy.values())
    assert [(s.size, s.pipelined, s.frames) for s in res.speeds] == [("64x48", False, 5), ("64x48", True, 5)]
    assert all(s.max_rss_mib > 10 for s in res.speeds)
    assert list(res.concurrent) == list(DEVICE_RATIOS)
    assert all([b.conversions for b in runs] == [1, 2] and runs[1].frames == 10 for runs in res.concurrent.values())
    text = report(res, "python -m bench.pipeline")
    assert "device busy share" in text and "Rule:" in text and "64x48" in text
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    replace_section(benchmarks, HEADING, text)
    assert "kept" in benchmarks.read_text() and HEADING in benchmarks.read_text()


@pytest.mark.parametrize(("cores", "device_ms", "conversions"), [
    (2, 5.35, 3),    # a fast device: the 2 cores bind (2 x 7.1 / 10.7 = 1.33 -> 2, + 1)
    (2, 13.4, 2),    # a device at 1.25 c binds: 7.1 / 13.4 = 0.53 -> 1, + 1 (measured: K = 2 keeps it 96 % busy)
    (16, 0.5, 12),   # a GPU far faster than 16 cores: the cores' term, ceil(16 x 0.66) + 1
    (16, 0.0, 12),   # device cost unknown: the cores' term, what a worker defaults to
])
def test_conversions_needed_is_whichever_of_cores_and_device_binds_first(cores: int, device_ms: float,
                                                                       conversions: int) -> None:
    assert conversions_needed(cores, c=10.7, slowest=7.1, d=device_ms) == conversions
