"""Log lines as JSON objects (``LOG_FORMAT=json``), each with the segment's identity when it is known.

One object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, then ``job_id``, ``segment_index``, ``task_id`` and ``stage``
whenever known, and ``exception`` for a traceback. The identity comes from, in
order: a context provider (the worker's reads the running Celery task:
``worker/logs.py``), fields bound around a block of work (``bound``: the
bridge binds each segment it publishes), and ``extra={...}`` of the call.
The default format stays human-readable text.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

LogFormat = Literal["text", "json"]
#: The segment's identity, in this order after the four base keys.
IDENTITY = ("job_id", "segment_index", "task_id", "stage")
_BASE = ("time", "level", "logger", "message")

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("video_worker_log_fields",
                                                                              default=None)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every line logged in this block (this thread or task) carries ``fields`` (None values are left out)."""
    token = _bound.set({**(_bound.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def segment_of(payload: Any) -> dict[str, Any]:
    """``job_id`` and ``segment_index`` of a stage's payload (a segment, or a result holding one), if any."""
    if not isinstance(payload, dict):
        return {}
    inner = payload.get("segment")
    source = inner if isinstance(inner, dict) else payload
    return {key: source[key] for key in ("job_id", "segment_index") if key in source}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``context`` gives fields known to the process (the running task's)."""

    def __init__(self, context: Callable[[], Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        line: dict[str, Any] = {"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields: dict[str, Any] = dict(self.context() if self.context else {})
        fields.update(_bound.get() or {})
        fields.update({key: value for key in IDENTITY if (value := record.__dict__.get(key)) is not None})
        line.update({key: fields.pop(key) for key in IDENTITY if fields.get(key) is not None})
        line.update({key: value for key, value in fields.items() if key not in _BASE})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def use_format(log_format: LogFormat, logger: logging.Logger | None = None,
               context: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """With ``json``, every handler of ``logger`` (default: the root logger) writes ``JsonFormatter`` lines."""
    if log_format != "json":
        return
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter(context))
