"""The model process's side of ``model_process``: build the model once, then convert what the worker sends.

Run as ``python -m video_worker.adapters.model_process FD PROGRESS_FD``. The
protocol over the socket ``FD`` (pickled tuples):

* worker → child: ``(model name, settings JSON, threads)``; the child answers
  ``("ready", (pid, fingerprint, context_frames, reports_progress))`` once the
  model is built and warmed up, or ``("failed", one line)``;
* worker → child: ``("infer", request id, slot, src, dst, mode, context)``, at
  most ``threads`` in flight; each runs in a thread of its own, all sharing
  the one model, and is answered ``("ok", request id)`` or
  ``("error", request id, error class, message)``, in the order they finish;
* the worker closes the socket: the child exits.

A model that declares ``reports_progress`` is given ``progress``: the counter of
the request's slot in the shared file ``PROGRESS_FD`` (``model_progress``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from video_worker.adapters.model_progress import ProgressBoard
from video_worker.errors import classify
from video_worker.inference import context_frames, infer, load_model, reports_progress
from video_worker.ports import Model

if TYPE_CHECKING:
    from video_worker.settings import Settings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (thread) dies; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _settings(settings_json: str) -> Settings:
    """The worker's settings, for a model that takes them (pydantic-settings costs this process ~16 MB)."""
    from video_worker.settings import Settings

    return Settings.model_validate_json(settings_json)


class _Server:
    """One model, ``threads`` requests at a time, answers sent back as each finishes."""

    def __init__(self, conn: Connection, model: Model, board: ProgressBoard) -> None:
        self.conn = conn
        self.model = model
        self.board = board
        self._send_lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # the worker is gone: nobody to answer
            self.conn.send(message)

    def run(self, request_id: int, slot: int, src: str, dst: str, mode: str, context: str | None) -> None:
        try:
            infer(self.model, Path(src), Path(dst), mode, Path(context) if context else None,  # type: ignore[arg-type]
                  progress=self.board.reporter(slot))
        except BaseException as exc:  # a model may raise anything; the worker gets our error tree
            error = classify(exc)
            self.send(("error", request_id, type(error).__name__, str(error)))
        else:
            self.send(("ok", request_id))


def serve(conn: Connection, progress_fd: int) -> None:
    """The child's loop: receive the settings, build the model, warm it up, then serve requests in threads
    until the socket closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        name, settings_json, threads = conn.recv()
        board = ProgressBoard(progress_fd, threads)
        os.close(progress_fd)
        model = load_model(name, lambda: _settings(settings_json))
        warm_up = getattr(model, "warm_up", None)
        if callable(warm_up):
            warm_up()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", (os.getpid(), getattr(model, "fingerprint", None), context_frames(model),
                         reports_progress(model))))
    server = _Server(conn, model, board)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="infer")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        if request[0] != "infer":
            break
        pool.submit(server.run, *request[1:])
    # The worker closed the socket (it is stopping): requests still running finish, or end with the process
    # when the worker kills it after its grace period.
    pool.shutdown(wait=True)
