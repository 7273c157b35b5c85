"""Formatting shared by the report's tables (``bench/report.py``, ``bench/stereo_report.py``): numbers,
percentages, byte ratios, and the memory table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from bench.workloads import Memory


def num(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def pct(x: float | None) -> str:
    return f"{x * 100:.0f}%" if x is not None else "-"


def in_out(bytes_in: int, bytes_out: int, of: int) -> str:
    """Bytes in / out over the network as multiples of ``of`` (the segments' own bytes)."""
    return f"{bytes_in / of:.2f}x / {bytes_out / of:.2f}x"


M = TypeVar("M", bound=Memory)


def memory_details(title: str, mem: list[M], label: Callable[[M], str]) -> list[str]:
    """The table of memory runs (``label`` names each segment), the per-process split and how it is sampled."""
    if not mem:
        return []
    out = [title, "",
           "| segment | idle tree RSS | peak tree RSS (sum) | peak tree PSS (sum) | Σ per-process VmHWM | "
           "processes | chains run | seconds | bytes in/out | check |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for m in mem:
        out.append(f"| {label(m)} | {m.idle_rss / 1e6:.0f} MB | {m.peak_rss / 1e6:.0f} MB | "
                   f"{m.peak_pss / 1e6:.0f} MB | {m.hwm_sum / 1e6:.0f} MB | {m.processes} | {m.chains} | "
                   f"{m.seconds:.1f} | "
                   f"{in_out(m.bytes_in, m.bytes_out, m.size)} | {m.verified} |")
    out += ["", "Per process (idle RSS → own peak RSS): " + "; ".join(
        f"{label(m)}: " + ", ".join(f"{name} {idle / 1e6:.0f} → {peak / 1e6:.0f} MB"
                                    for name, idle, peak in m.per_process) for m in mem) + "."]
    out += ["", "Sampled every 50 ms from /proc: RSS summed over the worker's main process and its children (the "
            "model process, `python -m video_worker.adapters.model_process`, and any pool processes; shared pages "
            "counted in each), PSS (shared pages split), and the sum of each process's own kernel-kept peak "
            "(VmHWM; an upper bound: the peaks need not coincide).", ""]
    return out
