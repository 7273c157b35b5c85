"""The worker host's scratch directory (``ports.Scratch``): where a segment's files live between its stages.

Paths are built only from validated payload fields (a safe job id and an
integer index) and are checked to stay inside the scratch root. Files are
written under a temporary name and renamed into place, so a half-written file
is never mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from video_worker.errors import UnsafePath
from video_worker.segments import LocalFile, Segment

log = logging.getLogger(__name__)

#: How often a worker process removes scratch files older than ``SCRATCH_MAX_AGE_SECONDS``.
SWEEP_SECONDS = 900.0
_PLAIN_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")

Stage = Literal["input", "output"]
_CREATE_ATTEMPTS = 5


class ScratchDir:
    """One host's scratch directory; ``host`` identifies it in ``LocalFile``s."""

    def __init__(self, root: Path, host: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.host = host or f"{socket.gethostname()}:{self.root}"

    def path_for(self, segment: Segment, stage: Stage) -> Path:
        """A new file for ``segment``'s input or output on this host.

        Each call gives a distinct name, so duplicate deliveries of one segment
        running at once on this host never read or delete each other's files.
        """
        job = segment.job_id
        folder = job if _PLAIN_JOB_ID.match(job) else "h-" + hashlib.sha256(job.encode()).hexdigest()[:32]
        name = f"{segment.segment_index:05d}.{stage}.{uuid.uuid4().hex[:12]}.mp4"
        path = (self.root / folder / name).resolve()
        if not path.is_relative_to(self.root) or path.parent.parent != self.root:
            raise UnsafePath(f"scratch path for job {job!r} leaves {self.root}")
        return path

    def describe(self, path: Path) -> LocalFile:
        return LocalFile(host=self.host, path=str(path), size=path.stat().st_size)

    def holds(self, file: LocalFile) -> Path | None:
        """The local path of ``file`` if it is on this host, complete; else ``None``."""
        if file.host != self.host:
            return None
        path = Path(file.path).resolve()
        if not path.is_relative_to(self.root):
            return None
        try:
            return path if path.stat().st_size == file.size else None
        except OSError:
            return None

    @contextmanager
    def writing(self, final: Path) -> Iterator[Path]:
        """Yield a temporary path; on success it is renamed to ``final``.

        Another slot's ``remove`` may delete the job folder (then empty) between
        our ``mkdir`` and the temporary file's creation: make it again and retry.
        Once the file exists the folder is not empty and stays.
        """
        for attempt in range(_CREATE_ATTEMPTS):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".part-", suffix=".mp4")
                break
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def sweep(self, max_age_seconds: float) -> int:
        """Delete files older than ``max_age_seconds`` (left by chains that moved host or failed)."""
        cutoff = time.time() - max_age_seconds
        removed = 0
        for path in self.root.glob("*/*.mp4"):
            try:
                if path.stat().st_mtime < cutoff:
                    self.remove(path)
                    removed += 1
            except OSError:
                continue
        return removed

    def remove(self, path: Path) -> None:
        """Delete a scratch file and its job folder once empty."""
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: other segments of the job are still here
            path.parent.rmdir()


def start_sweeping(scratch: ScratchDir, max_age_seconds: float, every: float = SWEEP_SECONDS) -> threading.Event:
    """Sweep now, then every ``every`` seconds in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                removed = scratch.sweep(max_age_seconds)
            except OSError as exc:  # the disk's problem shows up in the stages; never stop sweeping
                log.warning("scratch sweep of %s failed: %s", scratch.root, exc)
            else:
                if removed:
                    log.info("scratch sweep: removed %d file(s) older than %ds", removed, max_age_seconds)
            if stop.wait(every):
                return

    threading.Thread(target=loop, name="video-worker-scratch-sweep", daemon=True).start()
    return stop
