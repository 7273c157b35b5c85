"""Publishing chains to the broker (used by the bridge)."""

from __future__ import annotations

from video_worker.app import build_chain, create_app
from video_worker.bridge import Publish
from video_worker.events import SegmentEvent
from video_worker.settings import Settings


def chain_publisher(settings: Settings) -> Publish:
    """A ``Publish`` that sends one ``download → infer → upload → record`` chain per event."""
    app = create_app(settings)

    def publish(event: SegmentEvent) -> None:
        build_chain(event.work(), app).apply_async()

    return publish
