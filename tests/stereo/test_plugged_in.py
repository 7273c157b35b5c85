"""``STEREO_DEPTH=package.module:factory``: an estimator of one's own, and a one-line error for each way it is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import depth_plugins
from video_worker.errors import ConfigError
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.estimators import make_estimator
from video_worker.models.stereo.simulated_device import DEVICE, SimulatedDepth
from video_worker.models.stereo.synthetic import Scene
from video_worker.models.stereo.versions import fingerprint

PLUGINS = "tests.support.depth_plugins"


def test_a_factory_that_takes_the_settings_gets_them(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    settings = load_settings({"STEREO_DEPTH": f"{PLUGINS}:with_settings"})
    model = StereoModel(settings)
    assert isinstance(model.estimator, depth_plugins.Gradient) and model.estimator.settings is settings
    assert model.fingerprint == fingerprint(settings, "test-gradient-0.8")
    report = model.convert(clip[0], tmp_path / "out.mp4", "sbs")
    assert report.frames == 50 and model.estimator.resets == 1


def test_a_factory_without_arguments_and_the_version_in_the_fingerprint() -> None:
    plain = make_estimator(load_settings({"STEREO_DEPTH": f"{PLUGINS}:without_arguments"}))
    assert isinstance(plain, depth_plugins.Gradient) and plain.settings is None
    other = load_settings({"STEREO_DEPTH": f"{PLUGINS}:with_settings"})
    assert fingerprint(other, plain.version) != fingerprint(other, "test-gradient-0.8")


@pytest.mark.parametrize(("value", "problem"), [
    ("midas", "must be hybrid, heuristic, onnx or a package.module:factory path"),
    ("tests.support.no_such_module:factory", "cannot import tests.support.no_such_module"),
    (f"{PLUGINS}:absent", f"{PLUGINS} has no attribute absent"),
    (f"{PLUGINS}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a factory"),
    (f"{PLUGINS}:no_estimate", "gave a Half, not a depth estimator (it lacks estimate)"),
    (f"{PLUGINS}:failing", "the factory failed: RuntimeError: no GPU found"),
])
def test_a_bad_estimator_path_is_one_line_naming_the_setting(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_estimator(load_settings({"STEREO_DEPTH": value}))
    message = str(info.value)
    assert message.startswith(f"STEREO_DEPTH={value!r}: ") and problem in message and "\n" not in message


def test_the_simulated_device_by_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEREO_SIMULATED_MS_PER_FRAME", "2.5")
    device = make_estimator(load_settings({"STEREO_DEPTH": "video_worker.models.stereo.simulated_device:factory"}))
    assert isinstance(device, SimulatedDepth) and device.cost_per_frame == 0.0025 and device.device is DEVICE
    twin = device.fork()
    assert twin.device is DEVICE
    before = DEVICE.busy_seconds
    depths = twin.estimate(np.zeros((4, 18, 32, 3), np.uint8))
    assert depths.shape == (4, 18, 32) and depths.dtype == np.float32
    assert depths[0, -1, 0] == 1.0 and depths[0, 0, 0] == 0.0
    assert DEVICE.busy_seconds - before >= 0.01
    monkeypatch.setenv("STEREO_SIMULATED_MS_PER_FRAME", "fast")
    with pytest.raises(ConfigError, match="STEREO_SIMULATED_MS_PER_FRAME='fast'"):
        make_estimator(load_settings({"STEREO_DEPTH": "video_worker.models.stereo.simulated_device:factory"}))
