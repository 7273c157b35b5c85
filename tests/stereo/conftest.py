"""Shared fixtures: small real clips generated with PyAV, and conversions of them made once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.synthetic import Scene, write_clip


class Convert(Protocol):
    """converted(mode, sbs='full') -> the session's conversion of the default clip."""

    def __call__(self, mode: str, sbs: str = "full") -> Path: ...


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stereo")


@pytest.fixture(scope="session")
def clip(workdir: Path) -> tuple[Path, Scene]:
    """2 s, 320x180, 25 fps, keyframe every 25 frames, with an AAC tone."""
    path = workdir / "clip.mp4"
    scene = write_clip(path, seconds=2.0, width=320, height=180, fps=25, audio=True, gop=25, seed=0)
    return path, scene


@pytest.fixture(scope="session")
def model() -> StereoModel:
    return StereoModel(load_settings({}))


@pytest.fixture(scope="session")
def converted(clip: tuple[Path, Scene], workdir: Path, model: StereoModel) -> Convert:
    """convert(mode, sbs) → path of the clip converted with default settings (cached per session)."""
    cache: dict[tuple[str, str], Path] = {}
    half = StereoModel(load_settings({"STEREO_SBS": "half"}))

    def convert(mode: str, sbs: str = "full") -> Path:
        key = (mode, sbs)
        if key not in cache:
            dst = workdir / f"out_{mode}_{sbs}.mp4"
            (half if sbs == "half" else model).convert(clip[0], dst, mode)  # type: ignore[arg-type]
            cache[key] = dst
        return cache[key]

    return convert
