"""Depth estimators plugged in by import path (``STEREO_DEPTH=tests.support.depth_plugins:...``) for the tests."""

from __future__ import annotations

import threading

import numpy as np

from video_worker.models.stereo.depth import Depths, Frames
from video_worker.models.stereo.settings import StereoSettings


class Gradient:
    """Depth = a vertical gradient (bottom near), scaled by ``near``; records the settings it was built with."""

    def __init__(self, near: float = 1.0, settings: StereoSettings | None = None) -> None:
        self.near, self.settings = near, settings
        self.resets = 0
        self.version = f"test-gradient-{near:g}"

    def estimate(self, frames: Frames) -> Depths:
        n, h, w = frames.shape[:3]
        column = np.linspace(0.0, self.near, h, dtype=np.float32)[:, None]
        return np.repeat(np.broadcast_to(column, (h, w))[None], n, axis=0)

    def reset(self) -> None:
        self.resets += 1


def with_settings(settings: StereoSettings) -> Gradient:
    """A factory that takes the settings."""
    return Gradient(0.8, settings)


def without_arguments() -> Gradient:
    """A factory that takes nothing."""
    return Gradient()


def no_estimate() -> object:
    """A factory that gives something without ``estimate``."""

    class Half:
        version = "half"

        def reset(self) -> None: ...

    return Half()


def failing() -> Gradient:
    raise RuntimeError("no GPU found")


NOT_CALLABLE = 42


class HangsOnDark(Gradient):
    """A gradient that hangs, as a wedged GPU call would, on a batch of (nearly) black frames: a stand-in for a
    depth network that never returns on one segment. ``fork`` shares nothing (no state to share)."""

    DARK = 8.0

    def __init__(self) -> None:
        super().__init__()
        self.version = "test-hangs-on-dark"

    def estimate(self, frames: Frames) -> Depths:
        if float(frames.mean()) < self.DARK:
            threading.Event().wait()  # never set: only the model process's death ends this
        return super().estimate(frames)

    def fork(self) -> HangsOnDark:
        return HangsOnDark()


def hangs_on_dark() -> HangsOnDark:
    """``STEREO_DEPTH=tests.support.depth_plugins:hangs_on_dark``."""
    return HangsOnDark()
