"""``MODEL=passthrough`` (the default): the original design's stub, a byte copy streamed with bounded memory."""

from __future__ import annotations

import shutil
from pathlib import Path

from video_worker.segments import Mode


class PassthroughModel:
    """Copies the input unchanged (no GPU)."""

    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        with src.open("rb") as fin, dst.open("wb") as fout:
            shutil.copyfileobj(fin, fout, length=1024 * 1024)
