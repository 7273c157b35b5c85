"""The segment's chain, as callers publish it: ``build_chain(segment, app).apply_async()``.

Signatures are built by task name (``stages.STAGE_NAMES``), so any Celery app
configured for the same broker can publish one.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from celery.canvas import Signature, chain

from video_worker.events import SegmentEvent
from video_worker.segments import Segment
from video_worker.stages import STAGE_NAMES


def build_chain(segment: Segment, app: Celery) -> Signature:
    """The whole ``download → infer → upload → record`` chain for one segment, through ``app``'s broker.

    ``video_worker.build_chain(segment)`` is this with the default app.
    """
    first = app.signature(STAGE_NAMES[0], args=(segment.model_dump(mode="json"),))
    return chain(first, *(app.signature(name) for name in STAGE_NAMES[1:]))


def chain_publisher(app: Celery) -> Callable[[SegmentEvent], None]:
    """The bridge's ``Publish``: one chain per segment event, through ``app``'s broker."""

    def publish(event: SegmentEvent) -> None:
        build_chain(event.work(), app).apply_async()

    return publish
