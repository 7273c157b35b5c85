"""The ONNX estimator on tiny generated networks (loading, layouts NCHW/NHWC, dynamic/fixed sizes, NxHxW /
Nx1xHxW outputs, declared conventions and metadata, the start-up dry run, OOM) and on FastDepth as published."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.support.media import probe
from tests.support.tiny_onnx import (
    fixed_conv_model,
    flat_output_model,
    huge_model,
    mean_resize_model,
    multiple_model,
    nhwc_model,
    sqrt_model,
    wrong_layout_model,
)
from video_worker.errors import ConfigError, TransientError
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.hybrid import FASTDEPTH as SHIPPED_FASTDEPTH
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
    path = huge_model(tmp_path / "huge.onnx")
    with pytest.raises(TransientError, match="out of memory"):
        OnnxDepth(path)  # at start-up, in the dry run
    est = OnnxDepth(path, dry_run=False)
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


@pytest.mark.parametrize("clip", [False, True], ids=["chw", "clip"])
def test_wrong_layout(tmp_path: Path, clip: bool) -> None:
    with pytest.raises(ConfigError, match="expected one Nx3xHxW or NxHxWx3 image input") as info:
        OnnxDepth(wrong_layout_model(tmp_path / "bad.onnx", clip=clip))
    assert "\n" not in str(info.value)


def test_model_end_to_end(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    path = mean_resize_model(tmp_path / "m.onnx")
    settings = load_settings({"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(path), "STEREO_BATCH": "8"})
    model = StereoModel(settings)
    assert isinstance(model.estimator, OnnxDepth)
    assert model.fingerprint != StereoModel(load_settings({})).fingerprint
    report = model.convert(clip[0], tmp_path / "o.mp4", "sbs")
    out, src = probe(tmp_path / "o.mp4"), probe(clip[0])
    assert report.frames == 50 and out.size == (640, 180) and out.pts == src.pts


# --- declared conventions -------------------------------------------------------------------------------------


def one_line(info: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_nhwc_model_works(tmp_path: Path) -> None:
    est = OnnxDepth(nhwc_model(tmp_path / "nhwc.onnx"))
    assert est._prepare(frames(1)).shape == (1, 56, 98, 3)
    depth = est.estimate(frames(2))
    assert depth.shape == (2, 54, 96)
    assert depth[:, :, 70:].mean() > 0.9 and depth[:, :, :20].mean() < 0.1


def test_unit_normalisation_is_plain_0_to_1(tmp_path: Path) -> None:
    path = mean_resize_model(tmp_path / "m.onnx")
    imagenet = OnnxDepth(path)._prepare(frames(1))
    unit = OnnxDepth(path, normalize="unit")._prepare(frames(1))
    assert imagenet.min() < 0 and imagenet.max() > 1
    assert np.isclose(unit.min(), 40 / 255) and np.isclose(unit.max(), 200 / 255)


def test_depth_output_is_turned_into_nearness(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), output="depth")  # bright = larger = farther now
    depth = est.estimate(frames(2))
    assert depth[:, :, 70:].mean() < 0.1 and depth[:, :, :20].mean() > 0.9


def test_declared_input_size_on_a_dynamic_model(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), input_size=(64, 32))
    assert est.input_size(96, 54) == (64, 32) and est.input_size(30, 300) == (64, 32)
    assert est.estimate(frames(1)).shape == (1, 54, 96)


def test_multiple_rounds_free_sizes(tmp_path: Path) -> None:
    est = OnnxDepth(multiple_model(tmp_path / "m32.onnx"), multiple=32)
    assert est.input_size(96, 54) == (96, 64) and est.input_size(10, 10) == (32, 32)
    assert est.estimate(frames(2)).shape == (2, 54, 96)


def test_fixed_size_model_wins_over_multiple_and_agrees_with_input_size(tmp_path: Path) -> None:
    path = fixed_conv_model(tmp_path / "f.onnx")
    assert OnnxDepth(path, multiple=32).input_size(96, 54) == (42, 28)
    assert OnnxDepth(path, input_size=(42, 28)).estimate(frames(1)).shape == (1, 54, 96)
    with pytest.raises(ConfigError) as info:
        OnnxDepth(path, input_size=(64, 64))
    assert one_line(info) == ("STEREO_DEPTH_INPUT_SIZE=64x64: the network's input is fixed at 42x28; "
                              "set STEREO_DEPTH_INPUT_SIZE=42x28 or leave it unset")


def test_metadata_supplies_the_conventions(tmp_path: Path) -> None:
    meta = {"video_worker.normalize": "unit", "video_worker.output": "depth", "video_worker.input_size": "64x32"}
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx", metadata=meta))
    assert (est.normalize, est.output, est.input_size(96, 54)) == ("unit", "depth", (64, 32))
    depth = est.estimate(frames(1))
    assert depth[:, :, 70:].mean() < 0.1  # bright = far, as the metadata says
    m32 = OnnxDepth(multiple_model(tmp_path / "m32.onnx", metadata={"video_worker.multiple": "32"}))
    assert m32.input_size(96, 54) == (96, 64)


def test_environment_wins_over_metadata(tmp_path: Path) -> None:
    meta = {"video_worker.normalize": "unit", "video_worker.output": "depth", "video_worker.input_size": "64x32"}
    path = mean_resize_model(tmp_path / "m.onnx", metadata=meta)
    est = OnnxDepth(path, normalize="imagenet", output="inverse", multiple=14)
    assert (est.normalize, est.output, est.input_size(96, 54)) == ("imagenet", "inverse", (98, 56))
    assert est.estimate(frames(1))[:, :, 70:].mean() > 0.9
    with pytest.raises(ConfigError) as info:
        OnnxDepth(multiple_model(tmp_path / "m32.onnx", metadata={"video_worker.multiple": "32"}), multiple=14)
    assert one_line(info).startswith("STEREO_DEPTH_MULTIPLE=14: the network rejects a 196x112 input")


def test_metadata_that_does_not_fit_the_network_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxDepth(multiple_model(tmp_path / "m32.onnx", metadata={"video_worker.multiple": "16"}))
    message = one_line(info)
    assert message.startswith("video_worker.multiple=16 in the model's metadata: the network rejects a 192x112 input")
    assert message.endswith("; try STEREO_DEPTH_MULTIPLE=32 or STEREO_DEPTH_INPUT_SIZE=WxH")
    fixed = fixed_conv_model(tmp_path / "f.onnx")
    model = onnx.load(str(fixed))
    onnx.helper.set_model_props(model, {"video_worker.input_size": "64x64"})
    onnx.save(model, str(fixed))
    with pytest.raises(ConfigError) as info:
        OnnxDepth(fixed)
    assert one_line(info) == ("video_worker.input_size=64x64 in the model's metadata: the network's input is fixed at "
                              "42x28; set STEREO_DEPTH_INPUT_SIZE=42x28 to override it")
    assert OnnxDepth(fixed, input_size=(42, 28)).input_size(96, 54) == (42, 28)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("video_worker.normalize", "zscore", "must be one of imagenet, unit; set STEREO_DEPTH_NORMALIZE"),
    ("video_worker.output", "near", "must be one of inverse, depth; set STEREO_DEPTH_OUTPUT"),
    ("video_worker.input_size", "big", "must be WIDTHxHEIGHT"),
    ("video_worker.multiple", "0", "between 1 and 256; set STEREO_DEPTH_MULTIPLE"),
])
def test_bad_metadata_is_one_line(tmp_path: Path, key: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxDepth(mean_resize_model(tmp_path / "m.onnx", metadata={key: value}))
    message = one_line(info)
    assert f"metadata {key}={value!r}" in message and words in message


# --- the dry run at start-up ----------------------------------------------------------------------------------


def test_dry_run_names_the_multiple_and_suggests_one_that_works(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxDepth(multiple_model(tmp_path / "m32.onnx"))
    message = one_line(info)
    assert message.startswith("STEREO_DEPTH_MULTIPLE=14 (the default): the network rejects a 196x112 input (at node ")
    assert message.endswith("; try STEREO_DEPTH_MULTIPLE=32 or STEREO_DEPTH_INPUT_SIZE=WxH")
    assert "/onnxruntime_src" not in message


def test_dry_run_names_a_declared_input_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxDepth(multiple_model(tmp_path / "m32.onnx"), input_size=(100, 60))
    message = one_line(info)
    assert message.startswith("STEREO_DEPTH_INPUT_SIZE=100x60: the network rejects a 100x60 input (")
    assert message.endswith("; try STEREO_DEPTH_MULTIPLE=32 instead")


def test_dry_run_catches_nan_output(tmp_path: Path) -> None:
    path = sqrt_model(tmp_path / "sqrt.onnx")
    with pytest.raises(ConfigError) as info:
        OnnxDepth(path)
    assert one_line(info).endswith("has NaN or infinite values; check STEREO_DEPTH_NORMALIZE (now imagenet)")
    OnnxDepth(path, normalize="unit")  # 0..1 input: no NaN


def test_dry_run_catches_a_wrong_output_shape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxDepth(flat_output_model(tmp_path / "flat.onnx"))
    assert "has shape (1, 1, 1), expected NxHxW or Nx1xHxW" in one_line(info)


def test_dry_run_leaves_the_smoothing_state_alone(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"))
    assert est._range is None
    twin = est.fork()
    assert twin._range is None and twin._session is est._session


def test_a_size_rejected_mid_segment_is_one_line(tmp_path: Path) -> None:
    from video_worker.errors import PermanentError

    est = OnnxDepth(multiple_model(tmp_path / "m32.onnx"), multiple=32)
    est.multiple = 14  # as if a frame size slipped past the dry run
    with pytest.raises(PermanentError) as info:
        est.estimate(frames(1))
    assert one_line(info).startswith("STEREO_DEPTH_MULTIPLE=14: the depth network rejects a 98x56 input (at node ")


def _write_bad_network(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEREO_")}
    env.update(STEREO_DEPTH="onnx", STEREO_DEPTH_MODEL=str(multiple_model(tmp_path / "m32.onnx")),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env


def test_convert_cli_with_a_bad_network_prints_one_line_and_exits_2(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "video_worker.ops.cli", "convert", str(clip[0]), str(tmp_path / "o.mp4"),
         "--mode", "sbs"], env=_write_bad_network(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("video-worker: STEREO_DEPTH_MULTIPLE=14 (the default): the network rejects a 196x112")
    assert not (tmp_path / "o.mp4").exists()


def test_worker_model_load_with_a_bad_network_is_one_config_line(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from video_worker.inference import check_model, load_model

    for name, value in _write_bad_network(tmp_path).items():
        if name.startswith("STEREO_"):
            monkeypatch.setenv(name, value)
    check_model("stereo")  # the settings alone are fine: the network is tried when the model is built
    with pytest.raises(ConfigError) as info:
        load_model("stereo")
    assert one_line(info).startswith("STEREO_DEPTH_MULTIPLE=14 (the default): the network rejects a 196x112 input")


def test_worker_model_process_with_a_bad_network_stops_with_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from video_worker.adapters.model_process import ProcessRunner
    from video_worker.settings import Settings

    for name, value in _write_bad_network(tmp_path).items():
        if name.startswith("STEREO_") or name == "PYTHONPATH":
            monkeypatch.setenv(name, value)
    runner = ProcessRunner(Settings(input_bucket_name="in-b", output_bucket_name="out-b",
                                    segment_completions_table_name="tbl", model="stereo"), 1, start_timeout=120)
    with pytest.raises(ConfigError) as info:
        runner.start()
    assert one_line(info).startswith("MODEL 'stereo' failed to load: ConfigError: STEREO_DEPTH_MULTIPLE=14 (the "
                                     "default): the network rejects a 196x112 input")


# --- FastDepth, a real network, as published ------------------------------------------------------------------

FASTDEPTH = SHIPPED_FASTDEPTH  # the package's copy of ../shared/models/fastdepth (the same bytes)
FASTDEPTH_AS_PUBLISHED = {"STEREO_DEPTH_NORMALIZE": "unit", "STEREO_DEPTH_OUTPUT": "depth",
                          "STEREO_DEPTH_INPUT_SIZE": "224x224"}


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (Spearman's convention)."""
    order = a.argsort(kind="stable")
    ranks = np.empty(len(a), np.float64)
    ranks[order] = np.arange(len(a))
    _, inverse = np.unique(a, return_inverse=True)
    return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a.ravel()), _ranks(b.ravel()))[0, 1])


def test_fastdepth_as_published_gives_nearness_decreasing_with_its_metric_depth() -> None:
    from video_worker.models.stereo.estimators import make_estimator

    est = make_estimator(load_settings({"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(FASTDEPTH),
                                        **FASTDEPTH_AS_PUBLISHED}))
    assert isinstance(est, OnnxDepth) and est.input_size(320, 180) == (224, 224)
    scene = Scene(224, 224, 25, seed=3)
    shots = np.stack([scene.frame(i)[0] for i in (0, 10, 20)])
    metres = est._session.run(None, {"input": (shots.astype(np.float32) / 255).transpose(0, 3, 1, 2)})[0][:, 0]
    nearness = est.estimate(shots)
    for i in range(len(shots)):
        assert spearman(nearness[i], metres[i]) < -0.95  # larger metric depth = farther = smaller nearness
    inside = (nearness > 0.0) & (nearness < 1.0)  # off the percentile clip: strictly decreasing
    assert spearman(nearness[inside], metres[inside]) < -0.99
    as_if_inverse = OnnxDepth(FASTDEPTH, normalize="unit", input_size=(224, 224)).estimate(shots)
    assert spearman(as_if_inverse[0], metres[0]) > 0.95  # the old assumption: far read as near, the 3D inverted


def test_fastdepth_with_free_sizes_rounded_to_32() -> None:
    est = OnnxDepth(FASTDEPTH, normalize="unit", output="depth", multiple=32)
    assert est.input_size(192, 108) == (192, 96)
    depth = est.estimate(np.stack([Scene(192, 108, 25).frame(i)[0] for i in range(2)]))
    assert depth.shape == (2, 108, 192) and np.isfinite(depth).all() and depth.max() > 0.5


def test_fastdepth_with_the_old_defaults_fails_at_start_up_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        StereoModel(load_settings({"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(FASTDEPTH)}))
    assert one_line(info) == (
        "STEREO_DEPTH_MULTIPLE=14 (the default): the network rejects a 196x112 input (at node Add: Attempting to "
        "broadcast an axis by a dimension other than 1. 25 by 28); try STEREO_DEPTH_MULTIPLE=32 or "
        "STEREO_DEPTH_INPUT_SIZE=WxH")
