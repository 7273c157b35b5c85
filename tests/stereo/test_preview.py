"""Documentation stills: the composite figure and the model's warm-up."""

from __future__ import annotations

from pathlib import Path

import cv2

from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.preview import composite
from video_worker.models.stereo.synthetic import Scene


def test_composite_figure(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    panels = composite(clip[0], tmp_path / "fig.png", frame_index=10)
    img = cv2.imread(str(tmp_path / "fig.png"))
    assert img is not None
    assert img.shape == (3 * 180, 640, 3)
    assert panels["sbs"].shape == (180, 640, 3) and panels["depth"].shape == (180, 320, 3)


def test_warm_up(model: StereoModel, tmp_path: Path) -> None:
    model.warm_up(tmp_path)
    assert list(tmp_path.iterdir()) == []
