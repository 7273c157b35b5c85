"""A ``celery worker -I`` module: records Celery's task signals (what Sentry and OpenTelemetry hook) to a file.

One JSON object per signal in ``SIGNAL_LOG``: the signal, the task's name and id, and the number of arguments.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from celery import signals

_lock = threading.Lock()


def _record(signal: str, sender: Any, task_id: str | None, args: Any) -> None:
    with _lock, open(os.environ["SIGNAL_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"signal": signal, "task": getattr(sender, "name", str(sender)), "id": task_id,
                              "args": len(args or ())}) + "\n")


@signals.task_prerun.connect
def _prerun(sender: Any = None, task_id: str | None = None, args: Any = None, **_: Any) -> None:
    _record("task_prerun", sender, task_id, args)


@signals.task_postrun.connect
def _postrun(sender: Any = None, task_id: str | None = None, args: Any = None, **_: Any) -> None:
    _record("task_postrun", sender, task_id, args)


@signals.task_success.connect
def _success(sender: Any = None, **_: Any) -> None:
    _record("task_success", sender, sender.request.id, sender.request.args)


@signals.task_failure.connect
def _failure(sender: Any = None, task_id: str | None = None, args: Any = None, **_: Any) -> None:
    _record("task_failure", sender, task_id, args)


@signals.task_retry.connect
def _retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    _record("task_retry", sender, getattr(request, "id", None), getattr(request, "args", None))
