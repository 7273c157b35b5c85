"""What the GPU benchmark measures besides time: the device's busy share (NVML, sampled in a thread) and the CPU
cores a process used (its CPU time over the wall time)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

SAMPLE_SECONDS = 0.05


@dataclass
class DeviceBusy:
    """NVML's utilisation of one GPU, sampled every ``SAMPLE_SECONDS`` while the block runs.

    NVML's figure is the share of its last sample period (1/6 s to 1 s, by GPU) in which at least one kernel ran:
    a busy share, not how much of the GPU's compute a kernel used. None everywhere when there is no NVML or no
    GPU (the CPU dry run).
    """

    index: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(wall-clock time, busy percent) pairs."""
    memory_peak: int | None = None
    name: str | None = None
    _nvml: Any = None
    _handle: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> DeviceBusy:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._nvml = pynvml
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # no nvidia-ml-py, no driver, no GPU: nothing to sample
            self._nvml = None
            return self
        self._thread = threading.Thread(target=self._sample, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        assert self._nvml is not None
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append((time.time(), int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)))
            used = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            self.memory_peak = max(self.memory_peak or 0, used)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._nvml is not None:
            self._nvml.nvmlShutdown()

    @property
    def busy(self) -> float | None:
        """The mean busy share, 0..1 (None: nothing sampled)."""
        return self.busy_between(0.0, float("inf"))

    def busy_between(self, start: float, end: float) -> float | None:
        """The mean busy share of the samples taken between two wall-clock times (``time.time()``)."""
        inside = [busy for t, busy in self.samples if start <= t <= end]
        return sum(inside) / len(inside) / 100 if inside else None


@dataclass
class CpuCores:
    """This process's CPU time (every thread) over the wall time while the block runs: cores used."""

    wall: float = 0.0
    cpu: float = 0.0
    _t0: float = 0.0
    _c0: float = 0.0

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def __enter__(self) -> CpuCores:
        self._t0, self._c0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.wall, self.cpu = time.perf_counter() - self._t0, self._cpu() - self._c0

    @property
    def cores(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0
