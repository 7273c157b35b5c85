"""``MODEL=simulated``: a stand-in for one GPU (benchmarks): busy ``SIMULATED_INFER_SECONDS`` per segment.

One inference per host at a time: an ``flock`` on a file in the scratch
directory holds across processes and pools. The output is the input's bytes.
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from video_worker.models.passthrough import PassthroughModel
from video_worker.segments import Mode
from video_worker.settings import Settings


class SimulatedAccelerator:
    def __init__(self, seconds: float, lock_path: Path) -> None:
        self.seconds = seconds
        self.lock_path = lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatedAccelerator:
        return cls(settings.simulated_infer_seconds, settings.scratch_dir / ".accelerator.lock")

    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                deadline = time.monotonic() + self.seconds
                PassthroughModel().infer(src, dst, mode)
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
