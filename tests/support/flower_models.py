"""Models for the monitoring tests, chosen with ``MODEL=tests.support.flower_models:...``.

The job id is the name of the scratch folder the input lives in
(``<scratch>/<job_id>/<index>.input.<token>.mp4``).
"""

from __future__ import annotations

from pathlib import Path

from video_worker.errors import ModelRejected, TransientError
from video_worker.models.passthrough import PassthroughModel
from video_worker.segments import Mode


class ScriptedModel:
    """Passthrough, except: jobs ``reject-*`` are rejected; jobs ``flaky-*`` fail once, transiently."""

    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        job = src.parent.name
        if job.startswith("reject-"):
            raise ModelRejected(f"{job}: the scripted model rejects this segment")
        marker = src.parent / ".failed-once"
        if job.startswith("flaky-") and not marker.exists():
            marker.touch()
            raise TransientError(f"{job}: scripted transient failure")
        PassthroughModel().infer(src, dst, mode)


def scripted() -> ScriptedModel:
    return ScriptedModel()
