"""The GPU benchmark's CPU dry run (``python -m bench.gpu --dry-run``): every part runs, with the real code paths
(the generated Depth-Anything-shaped network, ``OnnxDepth``'s runner, a conversion, the worker behind the
emulator), and the report has its shape. On a GPU host ``bench/gpu.sh`` runs the same with real sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_reports_every_part(tmp_path: Path) -> None:
    raw, benchmarks = tmp_path / "gpu.json", tmp_path / "BENCHMARKS.md"
    out = subprocess.run([sys.executable, "-m", "bench.gpu", "--dry-run", "--json", str(raw), "--write",
                          str(benchmarks), "--work", str(tmp_path / "work")],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(raw.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu" and report["errors"] == []
    rates = {(r["network"], r["batch"]): r for r in report["networks"]}
    assert set(rates) == {(name, batch) for name in ("FastDepth", "ViT-S-shaped") for batch in (1, 2)}
    assert all(r["fps"] > 0 and r["busy"] is None for r in rates.values())  # no GPU here: no busy share
    assert rates[("ViT-S-shaped", 1)]["input_size"] == [56, 56]
    conversions = {c["network"]: c for c in report["conversions"]}
    assert set(conversions) == {"FastDepth", "ViT-S-shaped"}
    assert all(c["frames"] == 10 and c["fps"] > 0 and c["cores"] > 0 for c in conversions.values())
    worker = report["worker"]
    assert worker["segments"] == 2 and worker["verified"] == "2/2 outputs" and worker["fps"] > 0
    assert len(worker["fingerprint"]) == 16
    assert "### The network alone" in out.stdout and "### The worker end to end" in out.stdout
    assert not benchmarks.exists()  # a dry run prints its section, never records it


def test_the_busy_share_is_taken_over_the_window_asked_for() -> None:
    from bench.gpu_meter import DeviceBusy

    meter = DeviceBusy(samples=[(10.0, 0), (11.0, 90), (12.0, 100), (13.0, 0)])
    assert meter.busy == 0.475
    assert meter.busy_between(10.5, 12.5) == 0.95  # the worker's window: first upload to last completion
    assert meter.busy_between(20.0, 30.0) is None


def test_a_real_run_s_section_shows_busy_shares_and_failures() -> None:
    from bench.gpu import Conversion, GpuReport, NetworkRate
    from bench.gpu_report import markdown

    report = GpuReport(False, "cuda", gpu="NVIDIA H100 80GB HBM3", onnxruntime="1.26.0",
                       providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                       networks=[NetworkRate("ViT-S-shaped", (518, 518), 8, 412.0, 0.97)],
                       conversions=[Conversion("FastDepth", 250, 4.0, 62.5, 0.18, 1.9)],
                       errors=["worker: RuntimeError: the emulator did not start"])
    text = markdown(report)
    assert "on NVIDIA H100 80GB HBM3, onnxruntime 1.26.0" in text and "--dry-run" not in text
    assert "| ViT-S-shaped | 518x518 | 412 (97%) |" in text
    assert "| FastDepth | 250 | 62.5 | 18% | 1.90 |" in text
    assert "- worker: RuntimeError: the emulator did not start" in text
