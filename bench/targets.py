"""The benchmark's targets: every threshold the report compares a figure against, in one table (``TARGETS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Target:
    """A figure of a workload (``measured``) must be ``comparison`` ``threshold``.

    ``unit`` is how the report prints the threshold (``"%"``: a fraction shown as a percentage);
    ``"="`` means equal, or, with a ``tolerance``, less than ``tolerance`` away.
    """

    name: str
    workload: str
    measured: str
    comparison: Literal["≥", "≤", "="]
    threshold: float
    unit: str = ""
    tolerance: float = 0.0

    def text(self) -> str:
        """The threshold as the report's target column shows it: ``≥ 95%``, ``≤ 0.4 s``, ``1x``."""
        shown = f"{self.threshold * 100:g}%" if self.unit == "%" else f"{self.threshold:g}{self.unit}"
        return shown if self.comparison == "=" else f"{self.comparison} {shown}"

    def met(self, value: float, of: float = 1.0) -> bool:
        """Whether ``value`` meets the target; ``of``: what a relative threshold is relative to."""
        limit = self.threshold * of
        if self.comparison == "≥":
            return value >= limit
        if self.comparison == "≤":
            return value <= limit
        return abs(value - limit) < self.tolerance if self.tolerance else value == limit


TARGETS: tuple[Target, ...] = (
    Target("accelerator speed-up", "accelerator-bound", "project segments/s ÷ reference segments/s",
           "≥", 1.6, "x"),
    Target("accelerator busy", "accelerator-bound", "segments x inference time ÷ wall time", "≥", 0.95, "%"),
    Target("scaling speed-up, 2 hosts", "scaling", "project segments/s on 2 hosts ÷ on 1 host", "≥", 1.9, "x"),
    Target("scaling speed-up, 4 hosts", "scaling", "project segments/s on 4 hosts ÷ on 1 host", "≥", 3.6, "x"),
    Target("scaling busy", "scaling", "segments x inference time ÷ wall time ÷ hosts", "≥", 0.90, "%"),
    Target("inferences per segment", "scaling", "1 + re-run inferences ÷ segments", "=", 1),
    Target("bytes per segment", "scaling", "S3 bytes in, and out, ÷ (segments x segment size)", "=", 1, "x",
           tolerance=0.01),
    Target("requests per segment", "overhead-bound", "AWS requests of all callers (incl. the bridge) ÷ segments",
           "≤", 12),
    Target("latency p50", "latency", "median of upload → completion row, idle system", "≤", 0.4, " s"),
    Target("latency p95", "latency", "95th percentile of upload → completion row, idle system", "≤", 0.8, " s"),
    Target("peak memory", "memory", "peak RSS of the worker's process tree (MB), largest segment", "≤", 160, " MB"),
    Target("memory growth", "memory", "peak RSS (MB), largest segment - smallest segment", "≤", 20, " MB"),
    Target("stereo pipeline efficiency", "stereo", "worker segments/s ÷ model-alone segments/s, same segments, "
           "INFER_CONCURRENCY=1 vs one model process", "≥", 0.95, "%"),
    Target("stereo fps per core, 640x360 sbs", "stereo", "frames ÷ CPU seconds of the model alone, 2 s clip",
           "≥", 45),
    Target("stereo fps per core, 1280x720 sbs", "stereo", "frames ÷ CPU seconds of the model alone, 2 s clip",
           "≥", 11),
    Target("stereo fps per core moonshot", "stereo", "frames ÷ CPU seconds of the model alone, 640x360 sbs",
           "≥", 60),
    Target("stereo memory growth", "stereo", "|peak RSS (MB) of the worker's tree, 60 s segment - 2 s segment|",
           "≤", 40, " MB"),
)
BY_NAME = {t.name: t for t in TARGETS}


def target(name: str) -> Target:
    """The target called ``name`` (a ``KeyError`` for a name not in ``TARGETS``)."""
    return BY_NAME[name]
