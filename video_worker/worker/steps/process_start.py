"""Worker bootstep ``ProcessStart``: the model can be built here, and (threads, solo) this process is ready.

Also ``init_process``, the one per-process initialisation hook: Celery's
``worker_process_init`` in prefork children (``celery_app.default_app``), this
step in a threads or solo worker.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import bootsteps

from video_worker.errors import ConfigError
from video_worker.inference import check_model
from video_worker.worker import upstream


class ProcessStart(bootsteps.StartStopStep):
    """Worker bootstep: check that the model can be built here (its extra, its settings), then, in a threads
    or solo worker, build the process's resources before consuming. A problem stops the worker with one line."""

    requires = ("celery.worker.components:Pool",)

    def start(self, worker: Any) -> None:
        # Celery's current app is per thread and the threads pool's threads have none: integrations that look
        # tasks up by name (OpenTelemetry's publish spans) would find the default app's, not ours.
        worker.app.set_default()
        prefork = upstream.is_prefork(worker)
        if not prefork:
            # Prefork kills a process at Celery's hard limit itself; the threads and solo pools enforce none:
            # there each stage's deadline takes it (``lifecycle.StageLifecycle.time_limit``). ``--time-limit`` or
            # ``task_time_limit``.
            worker.app.celery_time_limit = upstream.hard_time_limit(worker)
        try:
            check_model(worker.app.settings.model)
            if not prefork:
                init_process(worker.app)
        except ConfigError as exc:
            print(f"video-worker: {exc}", file=sys.__stderr__, flush=True)  # not Celery's logging proxy
            os._exit(2)  # before Celery's pool and consumer start: nothing to shut down


def init_process(app: Any) -> None:
    """The one per-process initialisation hook (see the module's doc): build the process's resources now.

    The model is checked first, as ``ProcessStart`` does: the solo pool sends ``worker_process_init`` when it is
    made, before that step starts, and a bare install (no stereo extra, ``MODEL=stereo`` by default) must stop
    with one line there too, not a logged traceback."""
    try:
        check_model(app.settings.model)
    except ConfigError as exc:
        print(f"video-worker: {exc}", file=sys.__stderr__, flush=True)
        os._exit(2)
    app.context.start()
