"""Progress counters a model process shares with the worker: how the worker tells a slow model from a hung one.

One 8-byte counter per request slot of a model process, in memory both map (a
``memfd`` on Linux, an unlinked temporary file elsewhere, its descriptor passed
to the child). The child's ``progress`` callable for a slot adds one to its
counter: no system call, no message. The worker reads the counter of each
request it waits for about once a second (``StallWatch``) and kills the
process when it has not changed for the stall limit (``STEREO_STALL_SECONDS``).
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable

_COUNTER = struct.Struct("=Q")


def shared_file(size: int) -> int:
    """A new file descriptor of ``size`` zero bytes that a child process may map (inheritable)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("video-worker-progress", 0)
    else:  # pragma: no cover - macOS: an unlinked temporary file
        fd, path = tempfile.mkstemp(prefix="video-worker-progress-")
        os.unlink(path)
    os.ftruncate(fd, max(size, 1))
    return fd


class ProgressBoard:
    """``slots`` progress counters mapped from the file ``fd`` (``shared_file``)."""

    def __init__(self, fd: int, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(fd, _COUNTER.size * slots)

    @classmethod
    def create(cls, slots: int) -> tuple[ProgressBoard, int]:
        """A new board and the descriptor of its file, to pass to the child (the caller closes it)."""
        fd = shared_file(_COUNTER.size * slots)
        return cls(fd, slots), fd

    def read(self, slot: int) -> int:
        return int(_COUNTER.unpack_from(self._map, slot * _COUNTER.size)[0])

    def reporter(self, slot: int) -> Callable[[], None]:
        """The ``progress`` callable of the request in ``slot``: adds one to its counter.

        Threads of one request may call it at once: an increment lost to a race still changes the counter,
        which is all the worker looks at.
        """
        offset = slot * _COUNTER.size
        board = self._map

        def progress() -> None:
            _COUNTER.pack_into(board, offset, (_COUNTER.unpack_from(board, offset)[0] + 1) & 0xFFFFFFFFFFFFFFFF)

        return progress

    def close(self) -> None:
        self._map.close()


class StallWatch:
    """One request's counter as the worker sees it: when it last changed, and whether that is too long ago."""

    def __init__(self, board: ProgressBoard, slot: int, limit: float, count: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``count``: the slot's counter when the request was sent."""
        self.board, self.slot, self.limit, self.clock = board, slot, limit, clock
        self.count = count
        self.steps = 0  # progress reports seen since the request started
        self.changed_at = clock()

    def stalled(self) -> bool:
        """Look at the counter now; True once it has not changed for ``limit`` seconds (never if 0)."""
        count = self.board.read(self.slot)
        now = self.clock()
        if count != self.count:
            self.steps += (count - self.count) & 0xFFFFFFFFFFFFFFFF
            self.count, self.changed_at = count, now
            return False
        return self.limit > 0 and now - self.changed_at >= self.limit

    def idle(self) -> float:
        """Seconds since the counter last changed (or the request started)."""
        return self.clock() - self.changed_at

    def check_interval(self) -> float:
        """How often to look: often enough to kill within about a tenth of the limit past it, at most 1 s."""
        return min(1.0, self.limit / 10) if self.limit > 0 else 1.0
