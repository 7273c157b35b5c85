"""Per-phase wall and CPU time of one conversion, and the report a conversion returns."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

PHASES = ("decode", "depth", "render", "encode")
"""The phases every frame goes through."""
CONTEXT = "context"
"""The phase before the frames: reading the previous segment's last frames (``STEREO_CONTEXT_FRAMES``)."""


class PhaseClock:
    """Accumulates wall (perf_counter) and CPU seconds per phase; ``lap`` closes the current one.

    CPU seconds are the process's (process_time), or with ``thread=True`` the calling thread's (thread_time: a
    clock per pipeline thread, whose wall time is then its busy time, waits for other threads excluded).
    """

    def __init__(self, thread: bool = False) -> None:
        self.wall = dict.fromkeys((CONTEXT, *PHASES), 0.0)
        self.cpu = dict.fromkeys((CONTEXT, *PHASES), 0.0)
        self._cpu_time = time.thread_time if thread else time.process_time
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self._mark = (self._t0, self._cpu_time())

    def start(self) -> None:
        """Start timing a phase now (time since the last lap is dropped)."""
        self._mark = (time.perf_counter(), self._cpu_time())

    def lap(self, phase: str) -> None:
        """Charge the time since the last start/lap to ``phase``."""
        now, cpu = time.perf_counter(), self._cpu_time()
        self.wall[phase] += now - self._mark[0]
        self.cpu[phase] += cpu - self._mark[1]
        self._mark = (now, cpu)

    def total(self) -> tuple[float, float]:
        """(wall, cpu) seconds since the clock was made (cpu: the whole process's)."""
        return time.perf_counter() - self._t0, time.process_time() - self._c0


@dataclass(frozen=True)
class ConversionReport:
    """What one conversion did and where the time went (seconds; CPU time counts every thread of the process)."""

    frames: int
    seconds: float
    cpu_seconds: float
    fps: float
    fps_per_core: float
    phases: dict[str, float] = field(default_factory=dict)
    phases_cpu: dict[str, float] = field(default_factory=dict)
    mode: str = ""
    input_size: tuple[int, int] = (0, 0)
    output_size: tuple[int, int] = (0, 0)
    fingerprint: str = ""
    context_frames: int = 0
    """Frames of the previous segment the estimator ran over first (0: none given, or not readable)."""
    context_decoded: int = 0
    """Frames of the previous segment decoded for them (from the keyframe before them)."""
    pipelined: bool = False
    """The phases ran overlapped in threads: ``phases`` is then each phase's busy time (they add up to more than
    ``seconds``), ``phases_cpu`` the CPU time of the thread that ran it (worker threads a library starts, such as
    OpenCV's, are counted in ``cpu_seconds`` only)."""

    @classmethod
    def build(cls, frames: int, clock: PhaseClock, phase_clocks: list[PhaseClock] | None = None,
              **info: object) -> ConversionReport:
        """The report of ``clock`` (made at the start), with the phases of ``phase_clocks`` (default: its own)."""
        wall, cpu = clock.total()
        phases, phases_cpu = dict(clock.wall), dict(clock.cpu)
        for other in phase_clocks or []:
            if other is not clock:
                for name in phases:
                    phases[name] += other.wall[name]
                    phases_cpu[name] += other.cpu[name]
        return cls(
            frames=frames, seconds=wall, cpu_seconds=cpu,
            fps=frames / wall if wall > 0 else 0.0, fps_per_core=frames / cpu if cpu > 0 else 0.0,
            phases=phases, phases_cpu=phases_cpu, **info,  # type: ignore[arg-type]
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
