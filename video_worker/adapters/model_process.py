"""Where the model runs: in supervised child processes (default), or in the worker itself.

``MODEL_ISOLATION=process`` (default): ceil(``INFER_CONCURRENCY`` /
``INFER_PER_PROCESS``) child processes (``python -m video_worker.adapters.model_process``:
started, never forked, since the worker has threads), started once per worker
process, each holding its own model, built and warmed up once, and converting
up to ``INFER_PER_PROCESS`` segments at once in threads that share it (one
network in the accelerator's memory; the protocol is in ``model_child``). The
worker sends a segment's paths to the least busy process and waits for its
answer up to the infer time limit, counted from when the process took the
segment (waiting for a free turn does not count).

* A model that crashes (segfault, ``os.abort``, a GPU driver fault, SIGKILL,
  the OOM killer) takes down its process only: every segment in flight there
  fails with ``WorkerLost`` and is retried, at most ``MAX_DELIVERIES`` times in
  all, then dead-lettered; the next segment gets a fresh process.
* A model that reports progress (``reports_progress``) and makes none for
  ``STEREO_STALL_SECONDS`` is killed with its process (``ModelStalled``, a
  ``WorkerLost``); a model that hangs is killed at the deadline
  (``StageTimeout``). The slot comes back, the accelerator is released with
  the process; other segments in flight in that process fail with
  ``SharedProcessKilled`` (transient, retried, not counted as deliveries).

Children ignore SIGINT/SIGTERM (a warm shutdown lets running inferences
finish), exit when the worker closes their socket, and are killed by the
kernel if the worker dies (``PR_SET_PDEATHSIG``).

``MODEL_ISOLATION=inline``: the model runs in the worker's own threads,
``INFER_CONCURRENCY`` at a time. No process boundary: a crash kills the
worker (the message is redelivered and bounded by ``MAX_DELIVERIES``) and a
hang or a stall cannot be stopped (only the stage time limit's retry bounds it
once the model returns); ``STEREO_STALL_SECONDS`` does not apply.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from video_worker.adapters.model_child import serve
from video_worker.adapters.model_handle import Child, Request, describe_exit
from video_worker.errors import ConfigError, ModelStalled, StageTimeout
from video_worker.inference import context_frames, infer
from video_worker.limits import Deadline
from video_worker.ports import Model
from video_worker.segments import Mode

if TYPE_CHECKING:
    from video_worker.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["InlineRunner", "ProcessRunner", "describe_exit"]


class InlineRunner:
    """``ports.ModelRunner``: the model in this process, shared by the pool's threads, ``slots`` at a time."""

    def __init__(self, model: Model, slots: int = 1) -> None:
        self.model = model
        self.fingerprint: str | None = getattr(model, "fingerprint", None)
        self.context_frames = context_frames(model)
        self._slots = threading.BoundedSemaphore(slots)

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None:
        with self._slots:
            infer(self.model, src, dst, mode, context)

    def close(self) -> None:
        pass


class _Place:
    """Where one model process lives: its current process (None until started, or after it was lost) and the
    requests the runner has placed there."""

    def __init__(self) -> None:
        self.child: Child | None = None
        self.placed = 0
        self.starting = threading.Lock()


class ProcessRunner:
    """``ports.ModelRunner``: model processes serving ``slots`` segments at a time in all, ``per_process`` in
    each (``settings.infer_per_process`` unless given); callers beyond ``slots`` wait their turn."""

    def __init__(self, settings: Settings, slots: int = 1, *, start_timeout: float = 600.0,
                 per_process: int | None = None) -> None:
        self.settings = settings
        self.model_name = settings.model
        self.start_timeout = start_timeout
        self.per_process = max(1, min(slots, per_process or settings.infer_per_process))
        #: Seconds without progress after which a model that reports progress is killed (0: never).
        self.stall_seconds = settings.stall_seconds
        #: What the model says shapes its output (``model.fingerprint``), known once a process has started.
        self.fingerprint: str | None = None
        #: Frames of the previous segment the model reads (``model.context_frames``), known likewise.
        self.context_frames = 0
        self._turns = threading.BoundedSemaphore(slots)
        self._places = [_Place() for _ in range(-(-slots // self.per_process))]
        self._lock = threading.Lock()

    @property
    def children(self) -> list[Child]:
        """The model processes running now."""
        with self._lock:
            return [place.child for place in self._places if place.child is not None]

    def start(self) -> None:
        """Start every model process now and wait until each has built and warmed up its model."""
        for place in self._places:
            self._child_of(place)

    def _child_of(self, place: _Place) -> Child:
        with place.starting:
            child = place.child
            if child is None or child.lost:
                if child is not None:
                    child.stop(0)
                child = place.child = self._spawn()
            return child

    def _spawn(self) -> Child:
        mine, theirs = socket.socketpair()
        board, progress_fd = Child.new_board(self.per_process)
        try:
            with theirs:
                argv = [sys.executable, "-m", "video_worker.adapters.model_process", str(theirs.fileno()),
                        str(progress_fd)]
                process = subprocess.Popen(argv, pass_fds=[theirs.fileno(), progress_fd])
        finally:
            os.close(progress_fd)
        parent = Connection(mine.detach())
        parent.send((self.model_name, self.settings.model_dump_json(), self.per_process))
        name = f"MODEL {self.model_name!r}"
        if not parent.poll(self.start_timeout):
            Child.abandon(process, parent, board)
            raise ConfigError(f"{name} did not start within {self.start_timeout:g}s")
        try:
            kind, detail = parent.recv()
        except (EOFError, OSError):
            Child.abandon(process, parent, board)
            raise ConfigError(f"{name}: its process {describe_exit(process.wait(5))} while loading") from None
        if kind != "ready":
            Child.abandon(process, parent, board)
            raise ConfigError(f"{name} failed to load: {detail}")
        pid, self.fingerprint, self.context_frames, reports_progress = detail
        log.info("model %s ready in process %s (fingerprint %s; %d segment(s) at a time%s)", self.model_name, pid,
                 self.fingerprint, self.per_process,
                 f"; killed after {self.stall_seconds:g}s without progress" if reports_progress and
                 self.stall_seconds else "")
        return Child(process, parent, board, self.per_process, self.stall_seconds if reports_progress else 0.0)

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None:
        with self._turns:
            with self._lock:
                place = min(self._places, key=lambda p: p.placed)
                place.placed += 1
            try:
                paths = (str(src), str(dst), mode, str(context) if context else None)
                while (request := (child := self._child_of(place)).submit(deadline.stage, paths)) is None:
                    pass  # the process was killed for another segment after it was chosen: a fresh one
                self._await(child, request, deadline.restart())
            finally:
                with self._lock:
                    place.placed -= 1

    def _await(self, child: Child, request: Request, deadline: Deadline) -> None:
        """Wait for ``request``'s answer; kill its process at the deadline or when its progress stalls."""
        watch = child.watch(request)
        while not request.done.wait(min(watch.check_interval() if watch else 1.0, max(0.0, deadline.remaining()))):
            if deadline.remaining() <= 0:
                child.kill(request, StageTimeout(f"{deadline.expired()}; model process {child.pid} killed"))
            elif watch is not None and watch.stalled():
                child.kill(request, ModelStalled(
                    f"the model made no progress for {watch.idle():.0f}s while running {deadline.stage} "
                    f"(STEREO_STALL_SECONDS={watch.limit:g}) after {watch.steps} progress report(s); "
                    f"model process {child.pid} killed"))
        if request.error is not None:
            raise request.error

    def close(self) -> None:
        """Stop every model process (each finishes the segments it holds, if any, within 2 s)."""
        with self._lock:
            children = [place.child for place in self._places if place.child is not None]
            for place in self._places:
                place.child = None
        for child in children:
            child.stop()


if __name__ == "__main__":  # python -m video_worker.adapters.model_process FD PROGRESS_FD
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/model] %(name)s: %(message)s")
    serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
