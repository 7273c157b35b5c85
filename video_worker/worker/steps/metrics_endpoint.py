"""Worker bootstep ``MetricsEndpoint`` (``METRICS_PORT``): the worker's metrics, made and served."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from celery import bootsteps
from prometheus_client import CollectorRegistry, start_http_server

from video_worker.worker import upstream
from video_worker.worker.metrics.multiprocess import (
    MULTIPROC_ENV,
    clean,
    collect_from_files,
    forget_exited_children,
    multiprocess_dir,
)
from video_worker.worker.metrics.series import WorkerMetrics, connect

log = logging.getLogger(__name__)


class MetricsEndpoint(bootsteps.StartStopStep):
    """Worker bootstep (``METRICS_PORT``): the series are made before the pool forks (``create``), the HTTP
    server starts in the main process once the pool runs (``start``). A port in use stops the worker at once."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.port: int | None = worker.app.settings.metrics_port
        self.enabled = self.port is not None
        self.registry: CollectorRegistry | None = None
        self.server: Any = None

    def create(self, worker: Any) -> None:
        settings, port = worker.app.settings, self.port
        assert port is not None
        with socket.socket() as probe:  # fail before any process is forked, with one line
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as exc:
                print(f"video-worker: METRICS_PORT {port}: {exc.strerror}", file=sys.__stderr__, flush=True)
                os._exit(2)
        path, ours = multiprocess_dir(settings, port)
        if upstream.is_prefork(worker) or not ours:
            clean(path, ours)
            self.registry = collect_from_files(path)
            metrics = WorkerMetrics(None)  # their values in files
            forget_exited_children()
        else:
            self.registry = CollectorRegistry()
            metrics = WorkerMetrics(self.registry)
        connect(metrics)
        worker.app.metrics = metrics  # before the pool forks: each process meters its own dependencies

    def start(self, worker: Any) -> None:
        assert self.port is not None and self.registry is not None
        self.server, _thread = start_http_server(self.port, registry=self.registry)
        log.info("metrics on :%d/metrics%s", self.port, " (multiprocess)" if os.environ.get(MULTIPROC_ENV) else "")

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
