"""The ONNX estimator on tiny generated networks: loading, layouts (dynamic/fixed, NxHxW / Nx1xHxW), OOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.media import probe
from tests.support.tiny_onnx import fixed_conv_model, huge_model, mean_resize_model, wrong_layout_model
from video_worker.errors import ConfigError, TransientError
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.onnx_depth import OnnxDepth, is_out_of_memory
from video_worker.models.stereo.synthetic import Scene


def frames(n: int, h: int = 54, w: int = 96) -> np.ndarray:
    """Dark left half, bright right half (the tiny networks call brighter 'nearer')."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[:, :, : w // 2] = 40
    f[:, :, w // 2 :] = 200
    return f


def test_dynamic_model_with_resized_output(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"))
    assert est.input_size(96, 54) == (98, 56)  # rounded to multiples of 14
    depth = est.estimate(frames(3))
    assert depth.shape == (3, 54, 96) and depth.dtype == np.float32
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    assert depth[:, :, 70:].mean() > 0.9 and depth[:, :, :20].mean() < 0.1  # bright = near


def test_fixed_shape_model_needs_resize_and_batch_of_one(tmp_path: Path) -> None:
    est = OnnxDepth(fixed_conv_model(tmp_path / "f.onnx"))
    assert est.input_size(96, 54) == (42, 28)
    depth = est.estimate(frames(3))  # three runs of batch 1; Nx1xHxW output squeezed and resized back
    assert depth.shape == (3, 54, 96)
    assert depth[:, :, 70:].mean() > depth[:, :, :20].mean() + 0.5


def test_fixed_batch_pads_the_last_chunk(tmp_path: Path) -> None:
    est = OnnxDepth(fixed_conv_model(tmp_path / "f4.onnx", batch=4))
    assert est.estimate(frames(6)).shape == (6, 54, 96)


def test_normalisation_range_is_smoothed_not_per_frame(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"))
    est.estimate(frames(1))
    dimmer = frames(1) // 2  # the whole picture darker: per-frame min/max would give the same depth
    second = est.estimate(dimmer)[0]
    est.reset()
    fresh = est.estimate(dimmer)[0]
    assert not np.allclose(second, fresh)
    assert fresh[:, 70:].mean() > 0.9


def test_real_out_of_memory_is_transient(tmp_path: Path) -> None:
    est = OnnxDepth(huge_model(tmp_path / "huge.onnx"))
    with pytest.raises(TransientError, match="out of memory"):
        est.estimate(frames(1, 28, 28))


@pytest.mark.parametrize("text", ["Failed to allocate memory for requested buffer", "CUDA error: out of memory",
                                  "CUBLAS_STATUS_ALLOC_FAILED", "std::bad_alloc"])
def test_out_of_memory_messages(text: str) -> None:
    assert is_out_of_memory(RuntimeError(text))
    assert not is_out_of_memory(RuntimeError("Invalid rank for input"))


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot be loaded") as info:
        OnnxDepth(bad)
    assert "\n" not in str(info.value)


def test_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Nx3xHxW"):
        OnnxDepth(wrong_layout_model(tmp_path / "nhwc.onnx"))


def test_model_end_to_end(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    path = mean_resize_model(tmp_path / "m.onnx")
    settings = load_settings({"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(path), "STEREO_BATCH": "8"})
    model = StereoModel(settings)
    assert isinstance(model.estimator, OnnxDepth)
    assert model.fingerprint != StereoModel(load_settings({})).fingerprint
    report = model.convert(clip[0], tmp_path / "o.mp4", "sbs")
    out, src = probe(tmp_path / "o.mp4"), probe(clip[0])
    assert report.frames == 50 and out.size == (640, 180) and out.pts == src.pts
