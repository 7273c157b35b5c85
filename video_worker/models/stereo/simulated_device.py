"""A depth estimator that stands in for an accelerator, for benchmarks and tests of how busy the converter keeps one.

Each batch holds the process-wide device (one lock: a GPU runs one batch at a time) for ``cost * frames`` seconds
of ``time.sleep``, which releases the GIL as a CUDA call does, and returns a fixed depth (a vertical gradient: the
bottom of the picture near). Plug it in with::

    STEREO_DEPTH=video_worker.models.stereo.simulated_device:factory STEREO_SIMULATED_MS_PER_FRAME=10

``DEVICE`` keeps the seconds it was busy, so busy share = busy seconds / wall seconds.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from video_worker.errors import ConfigError

from .depth import Depths, Frames

COST_VARIABLE = "STEREO_SIMULATED_MS_PER_FRAME"
"""The simulated device's milliseconds per frame (``factory``); 10 by default."""


class Device:
    """One simulated accelerator: a lock that serialises batches, and the time it was held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy_seconds = 0.0
        self.frames = 0

    def run(self, seconds: float, frames: int) -> None:
        """Hold the device for ``seconds`` (the GIL released meanwhile)."""
        with self.lock:
            start = time.perf_counter()
            time.sleep(seconds)
            self.busy_seconds += time.perf_counter() - start
            self.frames += frames


DEVICE = Device()
"""The process's one simulated device, shared by every estimator ``factory`` makes and by their forks."""


class SimulatedDepth:
    """A ``DepthEstimator`` whose work is ``cost_per_frame`` seconds a frame on ``device``."""

    version = "simulated-device-gradient-1"

    def __init__(self, cost_per_frame: float, device: Device | None = None) -> None:
        self.cost_per_frame = cost_per_frame
        self.device = device if device is not None else DEVICE

    def estimate(self, frames: Frames) -> Depths:
        n, h, w = frames.shape[:3]
        self.device.run(self.cost_per_frame * n, n)
        gradient = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        return np.repeat(np.broadcast_to(gradient, (h, w))[None], n, axis=0)

    def reset(self) -> None:
        """No temporal state."""

    def fork(self) -> SimulatedDepth:
        """A twin on the same device."""
        return SimulatedDepth(self.cost_per_frame, self.device)


def factory() -> SimulatedDepth:
    """``STEREO_DEPTH=video_worker.models.stereo.simulated_device:factory``: on ``DEVICE``, at
    ``STEREO_SIMULATED_MS_PER_FRAME`` milliseconds a frame."""
    text = os.environ.get(COST_VARIABLE, "10")
    try:
        ms = float(text)
    except ValueError:
        ms = -1.0
    if not 0.0 <= ms <= 10_000.0:
        raise ConfigError(f"{COST_VARIABLE}={text!r}: must be a number of milliseconds between 0 and 10000")
    return SimulatedDepth(ms / 1000.0)
