"""The stereo model alone, in a fresh process: the yardstick of the stereo workloads (``bench/stereo.py``).

``python -m bench.stereo_alone SPEC`` (SPEC: JSON ``{"sources": [...], "mode": "sbs", "out": DIR}``, optionally
``"cv_threads": N`` to pin OpenCV's threads, which the worker does not) builds one
``StereoModel`` from the ``STEREO_*`` environment, as a worker's model process does (``MODEL=stereo``), calls
``warm_up``, converts the sources back to back into ``out`` and prints one JSON line: each conversion's
``ConversionReport``, the loop's wall and CPU time (this process, every thread), the outputs' SHA-256 (read after
the loop), OpenCV's thread count and the process's peak RSS. Only the model is imported: no boto3, no Celery.
``alone(...)`` runs it from the benchmark and reads the answer.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from video_worker.models.stereo.timing import ConversionReport

#: How long one model-alone process may take (it converts at most a few minutes of video).
TIMEOUT = 900.0


@dataclass
class AloneRun:
    """What one model-alone process did: its conversions, the loop's wall and CPU seconds, the outputs' digests."""

    reports: list[ConversionReport] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    digests: list[str] = field(default_factory=list)
    cv_threads: int = 0
    peak_rss: int = 0  # VmHWM, bytes
    warm_up: float = 0.0
    machine_cpu: float = 0.0  # busy CPU seconds of the whole machine during the loop (other jobs' load shows)

    @property
    def rate(self) -> float:
        """Segments per second, back to back."""
        return len(self.reports) / self.wall if self.wall else 0.0

    @property
    def other(self) -> float:
        """Cores the rest of the machine used during the loop (other jobs: the noise)."""
        return (self.machine_cpu - self.cpu) / self.wall if self.wall else 0.0


def _report(raw: dict[str, Any]) -> ConversionReport:
    return ConversionReport(**{**raw, "input_size": tuple(raw["input_size"]), "output_size": tuple(raw["output_size"])})


def alone(sources: list[Path], mode: str, work: Path, name: str, env: dict[str, str],
          cv_threads: int | None = None) -> AloneRun:
    """Convert ``sources`` in a fresh model-alone process with ``env`` (plus the basics); its log is in ``work``."""
    out = work / f"{name}-out"
    spec = json.dumps({"sources": [str(s) for s in sources], "mode": mode, "out": str(out), "cv_threads": cv_threads})
    child = procs.start(name, [sys.executable, "-m", "bench.stereo_alone", spec], procs.child_env(name, env), work,
                        cwd=Path(__file__).resolve().parent.parent)
    try:
        code = child.popen.wait(TIMEOUT)
    finally:
        child.stop(5)
    lines = child.log().strip().splitlines()
    if code != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"{name} exited ({code}):\n{child.log()[-3000:]}")
    raw = json.loads(lines[-1])
    return AloneRun([_report(r) for r in raw.pop("reports")], **raw)


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up, convert every source back to back (the timed part), then digest the outputs."""
    import cv2

    from video_worker.models.stereo import StereoModel

    if spec.get("cv_threads") is not None:
        cv2.setNumThreads(int(spec["cv_threads"]))

    model = StereoModel()
    t0 = time.perf_counter()
    model.warm_up()
    warm = time.perf_counter() - t0
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    dsts = [out / f"{i:03d}.mp4" for i in range(len(spec["sources"]))]
    reports: list[dict[str, Any]] = []
    wall0, cpu0, machine0 = time.perf_counter(), time.process_time(), procs.machine_busy()
    previous: Path | None = None  # the worker gives each segment of a job the one before it as context
    for src, dst in zip(spec["sources"], dsts, strict=True):
        reports.append(model.convert(Path(src), dst, spec["mode"], context=previous).as_dict())
        previous = Path(src)
    wall, cpu, machine = time.perf_counter() - wall0, time.process_time() - cpu0, procs.machine_busy() - machine0
    digests = [hashlib.sha256(dst.read_bytes()).hexdigest() for dst in dsts]
    return {"reports": reports, "wall": wall, "cpu": cpu, "digests": digests, "cv_threads": cv2.getNumThreads(),
            "peak_rss": _peak_rss(), "warm_up": warm, "machine_cpu": machine}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
