"""Multiprocess collection (prefork, or ``PROMETHEUS_MULTIPROC_DIR`` set by the user): each process writes its
values in files, the worker's main process adds them up (``Children``) and drops a dead child's live gauge."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from video_worker.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def collect_from_files(files: Path) -> CollectorRegistry:
    """Switch this process (and the pool's children, forked later) to values in files in ``files``; return the
    registry that adds them up.

    prometheus_client chooses where values live once, at import, from the environment
    (``values.ValueClass = get_value_class()``) and offers no other hook: it is chosen again here, before any
    series is made, with the environment set.
    """
    os.environ[MULTIPROC_ENV] = str(files)  # the pool's children inherit it
    values.ValueClass = values.get_value_class()
    registry = CollectorRegistry()
    registry.register(Children(files))
    return registry


def forget_exited_children() -> None:
    """Drop a pool child's live gauges when it exits (Celery's ``worker_process_shutdown``, in the child)."""
    def child_exited(pid: int | None = None, **_: Any) -> None:
        path = os.environ.get(MULTIPROC_ENV)
        if path and pid:
            mark_process_dead(pid, path)

    signals.worker_process_shutdown.connect(child_exited, weak=False, dispatch_uid="video_worker.metrics.exited")


def multiprocess_dir(settings: Settings, port: int) -> tuple[Path, bool]:
    """The user's ``PROMETHEUS_MULTIPROC_DIR``, or ours under the scratch dir; and whether it is ours."""
    given = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if given:
        return Path(given), False
    return settings.scratch_dir / f".metrics-{port}", True


def clean(path: Path, ours: bool) -> None:
    """Remove stale files: all of them in our own directory, those of processes no longer alive in the user's."""
    if ours:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    for name in glob.glob(str(path / "*_*.db")):
        pid = _pid_of(name)
        if pid is not None and not _alive(pid):
            with contextlib.suppress(OSError):
                os.remove(name)


def _pid_of(name: str) -> int | None:
    try:
        return int(Path(name).stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Children(Collector):
    """prometheus_client's ``MultiProcessCollector``, after dropping the live gauges of processes that died
    without telling (a child killed by a signal, the OOM killer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterator[Any]:
        for name in glob.glob(str(self.path / "gauge_live*_*.db")):
            pid = _pid_of(name)
            if pid is not None and not _alive(pid):
                mark_process_dead(pid, str(self.path))
        return iter(self._files.collect())
