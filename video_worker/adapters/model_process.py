"""Where the model runs: in supervised child processes (default), or in the worker itself.

``MODEL_ISOLATION=process`` (default): ``INFER_CONCURRENCY`` child processes
(``python -m video_worker.adapters.model_process``: started, never forked, since the
worker has threads), started once per worker process, each holding its own
model, built and warmed up once. The worker sends an idle child the paths of
one segment and waits for its answer up to the infer time limit, counted from
when the child took the segment (waiting for a free child does not count).
A model that crashes (segfault, ``os.abort``, a GPU
driver fault, SIGKILL, the OOM killer) takes down its child only: the stage
fails with ``WorkerLost`` and is retried, at most ``MAX_DELIVERIES`` times in
all, then dead-lettered; the next segment gets a fresh child. A model that
hangs is killed at the deadline (``StageTimeout``): the slot comes back, the
accelerator is released with the process. Children ignore SIGINT/SIGTERM (a
warm shutdown lets the running inference finish), exit when the worker closes
their pipe, and are killed by the kernel if the worker dies
(``PR_SET_PDEATHSIG``).

``MODEL_ISOLATION=inline``: the model runs in the worker's own threads,
``INFER_CONCURRENCY`` at a time. No process boundary: a crash kills the
worker (the message is redelivered and bounded by ``MAX_DELIVERIES``) and a
hang cannot be stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from video_worker import errors
from video_worker.errors import ConfigError, StageTimeout, WorkerLost, classify
from video_worker.inference import context_frames, infer, load_model
from video_worker.limits import Deadline
from video_worker.ports import Model
from video_worker.segments import Mode

if TYPE_CHECKING:
    from video_worker.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (thread) dies; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def serve(conn: Connection) -> None:
    """The child's loop: receive the settings, build the model, warm it up, then one ``infer`` per request
    until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        name, settings_json = conn.recv()
        model = load_model(name, lambda: _settings(settings_json))
        warm_up = getattr(model, "warm_up", None)
        if callable(warm_up):
            warm_up()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", (os.getpid(), getattr(model, "fingerprint", None), context_frames(model))))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request[0] != "infer":
            return
        _, src, dst, mode, context = request
        try:
            infer(model, Path(src), Path(dst), mode, Path(context) if context else None)
        except BaseException as exc:  # a model may raise anything; the parent gets our error tree
            error = classify(exc)
            conn.send(("error", type(error).__name__, str(error)))
        else:
            conn.send(("ok", None))


def _settings(settings_json: str) -> Settings:
    """The worker's settings, for a model that takes them (pydantic-settings costs this process ~16 MB)."""
    from video_worker.settings import Settings

    return Settings.model_validate_json(settings_json)


def _error(name: str, message: str) -> errors.VideoWorkerError:
    """Rebuild an error the child reported (only classes of our error tree are rebuilt)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.VideoWorkerError):
        return cls(message)
    return errors.PermanentError(f"{name}: {message}")


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class _Child:
    """One model process and the worker's end of its pipe."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn

    def stop(self, grace: float = 2.0) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class ProcessRunner:
    """``ports.ModelRunner``: ``slots`` model processes; a segment goes to an idle one (callers wait otherwise)."""

    def __init__(self, settings: Settings, slots: int = 1, *, start_timeout: float = 600.0) -> None:
        self.settings = settings
        self.model_name = settings.model
        self.start_timeout = start_timeout
        #: What the model says shapes its output (``model.fingerprint``), known once a process has started.
        self.fingerprint: str | None = None
        #: Frames of the previous segment the model reads (``model.context_frames``), known likewise.
        self.context_frames = 0
        self._idle: queue.Queue[_Child | None] = queue.Queue()
        self._all: set[_Child] = set()
        self._lock = threading.Lock()
        for _ in range(slots):
            self._idle.put(None)  # started on start() or first use

    def start(self) -> None:
        """Start every model process now and wait until each has built and warmed up its model."""
        slots = [self._idle.get() for _ in range(self._idle.qsize())]
        try:
            slots = [child or self._spawn() for child in slots]
        finally:
            for child in slots:
                self._idle.put(child)

    def _spawn(self) -> _Child:
        mine, theirs = socket.socketpair()
        with theirs:
            argv = [sys.executable, "-m", "video_worker.adapters.model_process", str(theirs.fileno())]
            process = subprocess.Popen(argv, pass_fds=[theirs.fileno()])
        parent = Connection(mine.detach())
        parent.send((self.model_name, self.settings.model_dump_json()))
        child = _Child(process, parent)
        if not parent.poll(self.start_timeout):
            child.stop(0)
            raise ConfigError(f"MODEL {self.model_name!r} did not start within {self.start_timeout:g}s")
        try:
            kind, detail = parent.recv()
        except (EOFError, OSError):
            child.stop(0)
            raise ConfigError(f"MODEL {self.model_name!r}: its process {describe_exit(process.wait(5))} "
                              "while loading") from None
        if kind != "ready":
            child.stop(0)
            raise ConfigError(f"MODEL {self.model_name!r} failed to load: {detail}")
        pid, self.fingerprint, self.context_frames = detail
        with self._lock:
            self._all.add(child)
        log.info("model %s ready in process %s (fingerprint %s)", self.model_name, pid, self.fingerprint)
        return child

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None:
        child = self._idle.get()
        try:
            child = child or self._spawn()
            self._run(child, (str(src), str(dst), mode, str(context) if context else None), deadline.restart())
        finally:
            with self._lock:
                usable = child if child in self._all else None
            self._idle.put(usable)

    def _run(self, child: _Child, paths: tuple[str, str, Mode, str | None], deadline: Deadline) -> None:
        """One request (src, dst, mode, context); a child that dies or overruns is discarded (a new one starts on
        next use)."""
        try:
            child.conn.send(("infer", *paths))
            if not child.conn.poll(max(0.0, deadline.remaining())):
                self._discard(child)
                raise StageTimeout(f"{deadline.expired()}; model process {child.process.pid} killed")
            answer = child.conn.recv()
        except (EOFError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
            self._discard(child)
            raise WorkerLost(f"model process {describe_exit(child.process.returncode)} while running "
                             f"{deadline.stage}") from None
        if answer[0] == "error":
            raise _error(answer[1], answer[2])

    def _discard(self, child: _Child) -> None:
        with self._lock:
            self._all.discard(child)
        child.stop(0)

    def close(self) -> None:
        """Stop every model process (each finishes the segment it holds, if any, within 2 s)."""
        with self._lock:
            children, self._all = list(self._all), set()
        for child in children:
            child.stop()


if __name__ == "__main__":  # python -m video_worker.adapters.model_process FD
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/model] %(name)s: %(message)s")
    serve(Connection(int(sys.argv[1])))
