"""Video worker: S3 segment events → Celery chain download → infer → upload → record.

``celery -A video_worker worker`` uses ``app`` below. Importing this package
reads no environment; settings are loaded when the app is first configured.
"""

from video_worker.app import VideoWorkerApp, build_chain, create_app
from video_worker.inference import process_segment
from video_worker.keys import build_output_segment_key, parse_segment_key
from video_worker.payloads import SegmentCompletion, VideoWorkerPayload

app = create_app()

__all__ = [
    "SegmentCompletion",
    "VideoWorkerApp",
    "VideoWorkerPayload",
    "app",
    "build_chain",
    "build_output_segment_key",
    "create_app",
    "parse_segment_key",
    "process_segment",
]
