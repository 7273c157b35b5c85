"""Models that misbehave on purpose, loaded by real workers with ``MODEL=tests.support.models:<factory>``.

Each copies its input like the pass-through model, unless the input holds a
marker: ``POISON`` kills the process running it (SIGKILL), ``ABORT`` aborts
it (SIGABRT, as a crashing native library does), ``HANG`` never returns, ``REJECT`` rejects it (``ModelRejected``),
``DISKFULL`` fails with ENOSPC the first time a segment is seen (a marker
file in ``MISBEHAVE_STATE_DIR`` remembers it) and then works.

``progressing`` reports progress (``reports_progress``, as the stereo converter does): ``STALL`` reports
progress a few times and then never again nor returns; ``SLOW <seconds>`` reports progress every 50 ms for
that long, then copies; ``MEET`` waits (up to 30 s) until another ``MEET`` segment is being converted by the
same model object at the same time, then writes what it saw (the model's build number and id in its process,
the process, the thread, how many were converting at once) as JSON instead of a copy.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from video_worker.errors import ModelRejected
from video_worker.segments import Mode


class Misbehaving:
    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        head = src.read_bytes()[:4096]
        if b"POISON" in head:
            os.kill(os.getpid(), signal.SIGKILL)
        if b"ABORT" in head:
            os.abort()
        if b"HANG" in head:
            threading.Event().wait()
        if b"REJECT" in head:
            raise ModelRejected("the model cannot convert this segment")
        if b"DISKFULL" in head:
            state = Path(os.environ["MISBEHAVE_STATE_DIR"]) / hashlib.sha256(head).hexdigest()
            if not state.exists():
                state.parent.mkdir(parents=True, exist_ok=True)
                state.touch()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        shutil.copyfile(src, dst)


def misbehaving() -> Misbehaving:
    return Misbehaving()


_builds = itertools.count(1)


class Progressing(Misbehaving):
    """Reports progress; the markers above, then ``Misbehaving``'s."""

    reports_progress = True

    def __init__(self) -> None:
        self.build = next(_builds)  # how many were built in this process, this one included
        self._lock = threading.Lock()
        self._converting = 0
        self._at_meeting = 0
        self._meeting = threading.Barrier(2, action=self._met, timeout=30)

    def _met(self) -> None:
        with self._lock:
            self._at_meeting = self._converting  # both are inside ``infer`` now

    def infer(self, src: Path, dst: Path, mode: Mode, context: Path | None = None,  # type: ignore[override]
              progress: Callable[[], None] | None = None) -> None:
        report = progress or (lambda: None)
        head = src.read_bytes()[:4096]
        with self._lock:
            self._converting += 1
            at_once = self._converting
        try:
            if head.startswith(b"STALL"):
                for _ in range(3):
                    report()
                threading.Event().wait()
            if head.startswith(b"SLOW"):
                until = time.monotonic() + float(head.split()[1])
                while time.monotonic() < until:
                    report()
                    time.sleep(0.05)
            if head.startswith(b"MEET"):
                self._meeting.wait()  # BrokenBarrierError unless another request meets this one here
                at_once = self._at_meeting
                dst.write_text(json.dumps({"build": self.build, "model": id(self), "pid": os.getpid(),
                                           "thread": threading.get_ident(), "at_once": at_once}))
                return
            super().infer(src, dst, mode)
        finally:
            with self._lock:
                self._converting -= 1


def progressing() -> Progressing:
    return Progressing()
