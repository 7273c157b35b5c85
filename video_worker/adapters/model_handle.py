"""The worker's handle on one model process (``model_process``): its requests in flight, their answers, its end.

A reader thread per process routes each answer to the request it belongs to
(``Request.done``). A process that dies fails every request in flight there
with ``WorkerLost``; one the worker kills (``Child.kill``: a time limit, a
stall) fails the request it was killed for with that error and the others
with ``SharedProcessKilled``: they were collateral.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import socket
import subprocess
import threading
from multiprocessing.connection import Connection

from video_worker import errors
from video_worker.adapters.model_progress import ProgressBoard, StallWatch
from video_worker.errors import SharedProcessKilled, VideoWorkerError, WorkerLost

log = logging.getLogger(__name__)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _error(name: str, message: str) -> VideoWorkerError:
    """Rebuild an error the child reported (only classes of our error tree are rebuilt)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, VideoWorkerError):
        return cls(message)
    return errors.PermanentError(f"{name}: {message}")


class Request:
    """One segment sent to a model process: ``done`` once answered; ``error`` None if it succeeded."""

    def __init__(self, request_id: int, slot: int, stage: str, progress: int) -> None:
        self.id, self.slot, self.stage = request_id, slot, stage
        self.progress = progress  # the slot's progress counter when the request was sent
        self.done = threading.Event()
        self.error: VideoWorkerError | None = None


class Child:
    """One model process, the worker's end of its socket, and the requests in flight there."""

    _ids = itertools.count(1)

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, board: ProgressBoard, capacity: int,
                 stall_seconds: float) -> None:
        self.process = process
        self.conn = conn
        self.board = board
        self.stall_seconds = stall_seconds  # 0: the model reports no progress, or the watch is off
        #: True once the process is dead or being killed: no new request goes to it.
        self.lost = False
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._free = list(range(capacity))
        self._in_flight: dict[int, Request] = {}
        self._reader = threading.Thread(target=self._read, name=f"model-process-{process.pid}", daemon=True)
        self._reader.start()

    @staticmethod
    def new_board(capacity: int) -> tuple[ProgressBoard, int]:
        """A progress board for a new process, and the descriptor to pass it."""
        return ProgressBoard.create(capacity)

    @staticmethod
    def abandon(process: subprocess.Popen[bytes], conn: Connection, board: ProgressBoard) -> None:
        """Kill a process that never became ready."""
        with contextlib.suppress(OSError):
            conn.close()
        process.kill()
        process.wait(5)
        board.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        with self._lock:
            return len(self._in_flight)

    def submit(self, stage: str, paths: tuple[str, str, str, str | None]) -> Request | None:
        """Send one segment (src, dst, mode, context); its answer arrives on the returned request. None if the
        process was lost (killed for another segment) since the caller chose it: choose again."""
        with self._lock:
            if self.lost:
                return None
            if not self._free:  # the runner places at most ``capacity`` requests on a process
                raise RuntimeError(f"model process {self.pid} has no free slot")
            slot = self._free.pop()
            request = Request(next(self._ids), slot, stage, self.board.read(slot))
            self._in_flight[request.id] = request
        try:
            with self._send_lock:
                self.conn.send(("infer", request.id, request.slot, *paths))
        except OSError:
            self._died()
        return request

    def watch(self, request: Request) -> StallWatch | None:
        """The request's progress watch, or None when stalls are not watched for this model."""
        if self.stall_seconds <= 0:
            return None
        return StallWatch(self.board, request.slot, self.stall_seconds, request.progress)

    def _finish(self, request_id: int, error: VideoWorkerError | None) -> None:
        with self._lock:
            request = self._in_flight.pop(request_id, None)
            if request is None:
                return
            self._free.append(request.slot)
        request.error = error
        request.done.set()

    def _read(self) -> None:
        while True:
            try:
                answer = self.conn.recv()
            except (EOFError, OSError):
                break
            if answer[0] == "ok":
                self._finish(answer[1], None)
            elif answer[0] == "error":
                self._finish(answer[1], _error(answer[2], answer[3]))
        self._died()
        with self._send_lock:  # not while ``stop`` shuts the socket down: its descriptor must not be reused
            self.conn.close()

    def _died(self) -> None:
        """The socket closed: every request still in flight failed with the process (``WorkerLost``)."""
        with self._lock:
            self.lost = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        exit_ = describe_exit(self.process.returncode)
        with self._lock:
            requests = list(self._in_flight.values())
        others = len(requests) - 1
        for request in requests:
            beside = f" (with {others} other segment(s) in flight there)" if others else ""
            self._finish(request.id, WorkerLost(f"model process {exit_} while running {request.stage}{beside}"))

    def kill(self, culprit: Request, error: VideoWorkerError) -> None:
        """Kill the process for ``culprit``'s sake: it fails with ``error``, the others in flight there with
        ``SharedProcessKilled``."""
        with self._lock:
            self.lost = True
            others = [r for r in self._in_flight.values() if r is not culprit]
        log.warning("killing model process %s: %s", self.pid, error)
        self._finish(culprit.id, error)
        for request in others:
            self._finish(request.id, SharedProcessKilled(
                f"{request.stage}: model process {self.pid}, shared with another segment, was killed for that "
                f"segment ({type(error).__name__}); this one is retried"))
        self.stop(0)

    def stop(self, grace: float = 2.0) -> None:
        """Tell the process to exit (the end of its socket), give it ``grace`` seconds to finish, then kill it.

        The reader thread closes the socket once the process has gone (closing it under a thread blocked in
        ``recv`` would not wake that thread)."""
        with self._send_lock, contextlib.suppress(OSError):  # OSError: the reader closed it, the process is gone
            end = socket.socket(fileno=self.conn.fileno())
            try:
                end.shutdown(socket.SHUT_WR)
            finally:
                end.detach()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
