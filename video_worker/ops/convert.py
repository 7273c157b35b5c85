"""``video-worker convert IN OUT --mode sbs|anaglyph``: the stereo model on a local file, for model developers.

No AWS, no broker: the same ``StereoModel`` the worker runs (``MODEL=stereo``,
``STEREO_*`` settings from the environment), with the frames, the speed and
where the time went.
"""

from __future__ import annotations

from pathlib import Path

from video_worker import extras
from video_worker.inference import check_model
from video_worker.segments import Mode


def convert(src: Path, dst: Path, mode: Mode, preview: Path | None = None) -> int:
    """Convert ``src`` to ``dst``; print a report; ``preview`` gets one output frame as PNG."""
    extras.require("stereo", "video-worker convert")  # one line if not installed
    check_model("stereo")  # its STEREO_* settings
    from video_worker.models.stereo.model import StereoModel

    model = StereoModel()
    report = model.convert(src, dst, mode, preview=preview)
    split = ", ".join(f"{phase} {seconds:.2f}s" for phase, seconds in report.phases.items())
    width, height = report.output_size
    print(f"{dst}: {report.frames} frames {mode} {width}x{height} in {report.seconds:.2f}s "
          f"({report.fps:.1f} fps, {report.fps_per_core:.1f} fps per core of CPU time)")
    print(f"time: {split}")
    print(f"fingerprint: {report.fingerprint}")
    if preview is not None:
        print(f"preview: {preview}")
    return 0
