"""The GPU benchmark's section of ``BENCHMARKS.md`` (``bench/gpu.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.tables import pct

if TYPE_CHECKING:
    from bench.gpu import GpuReport


def markdown(report: GpuReport) -> str:
    """The section's body: what ran where, the three tables, and the errors of parts that failed."""
    where = report.gpu or "no GPU (NVML found none)"
    lines = [f"Measured by `bench/gpu.sh`{' --dry-run (CPU, tiny sizes: not figures)' if report.dry_run else ''} "
             f"on {where}, onnxruntime {report.onnxruntime} ({', '.join(report.providers)}), "
             f"STEREO_DEVICE={report.device}. Busy share: NVML's utilisation (the share of time a kernel ran), "
             "sampled every 50 ms.", ""]
    if report.networks:
        batches = sorted({r.batch for r in report.networks})
        lines += ["### The network alone: frames/s (device busy) per batch size", "",
                  "| network | input | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|---|---|" + "---:|" * len(batches)]
        for name in dict.fromkeys(r.network for r in report.networks):
            rows = {r.batch: r for r in report.networks if r.network == name}
            size = next(iter(rows.values())).input_size
            cells = [f"{rows[b].fps:.0f} ({pct(rows[b].busy)})" if b in rows else "-" for b in batches]
            lines.append(f"| {name} | {size[0]}x{size[1]} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.conversions:
        lines += ["### A conversion (one process, sbs, after its warm-up)", "",
                  "| network | frames | frames/s | device busy | CPU cores used |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {c.network} | {c.frames} | {c.fps:.1f} | {pct(c.busy)} | {c.cores:.2f} |"
                  for c in report.conversions]
        lines.append("")
    if report.worker is not None:
        w = report.worker
        lines += ["### The worker end to end (MODEL=stereo, FastDepth hybrid, default INFER_CONCURRENCY, "
                  "one model process)", "",
                  "| segments | frames | wall s | frames/s | device busy | CPU cores (worker) | outputs |",
                  "|---:|---:|---:|---:|---:|---:|---|",
                  f"| {w.segments} | {w.frames} | {w.wall:.1f} | {w.fps:.1f} | {pct(w.busy)} | {w.cores:.2f} | "
                  f"{w.verified} |", ""]
    if report.errors:
        lines += ["Parts that failed:", "", *[f"- {e}" for e in report.errors], ""]
    return "\n".join(lines)
