"""Models that misbehave on purpose, loaded by real workers with ``MODEL=tests.support.models:<factory>``.

Each copies its input like the pass-through model, unless the input holds a
marker: ``POISON`` kills the process running it (SIGKILL), ``ABORT`` aborts
it (SIGABRT, as a crashing native library does), ``HANG`` never returns, ``REJECT`` rejects it (``ModelRejected``),
``DISKFULL`` fails with ENOSPC the first time a segment is seen (a marker
file in ``MISBEHAVE_STATE_DIR`` remembers it) and then works.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import threading
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
