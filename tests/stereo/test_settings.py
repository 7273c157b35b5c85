"""Settings: environment names, defaults, one clear line per bad value, and the fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_worker.errors import ConfigError
from video_worker.models.stereo import StereoModel, StereoSettings, fingerprint, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert (s.divergence, s.convergence, s.depth_width, s.depth, s.batch) == (2.0, 0.5, 192, "hybrid", 4)
    assert (s.sbs, s.preset, s.crf, s.encoder_threads, s.max_frame_pixels) == ("full", "veryfast", 20, 1, 3840 * 2160)
    assert s.context_frames == 24


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"STEREO_DIVERGENCE": "3.5", "STEREO_SBS": "half", "STEREO_CRF": "23",
                        "STEREO_ENCODER_THREADS": "2", "MAX_FRAME_PIXELS": "100000", "STEREO_BATCH": "16"}.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.divergence, s.sbs, s.crf, s.encoder_threads, s.max_frame_pixels, s.batch) == (3.5, "half", 23, 2, 100000, 16)


def test_frozen() -> None:
    s = load_settings({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on a frozen model
        s.crf = 10  # type: ignore[misc]


BAD = [
    ("STEREO_DIVERGENCE", "50", "percent"), ("STEREO_DIVERGENCE", "abc", "number"), ("STEREO_CONVERGENCE", "2", "between"),
    ("STEREO_DEPTH_WIDTH", "8", "between"), ("STEREO_DEPTH", "midas", "heuristic"), ("STEREO_BATCH", "0", "between"),
    ("STEREO_SBS", "quarter", "full"), ("STEREO_PRESET", "fastest", "veryfast"), ("STEREO_CRF", "99", "between"),
    ("STEREO_ENCODER_THREADS", "auto", "not auto"), ("STEREO_ENCODER_THREADS", "0", "not auto"),
    ("STEREO_ENCODER_THREADS", "64", "between"), ("MAX_FRAME_PIXELS", "10", "at least"),
    ("STEREO_ONNX_THREADS", "0", "fixed"), ("STEREO_DEPTH_NORMALIZE", "zscore", "'imagenet' or 'unit'"),
    ("STEREO_DEPTH_OUTPUT", "disparity", "'inverse' or 'depth'"), ("STEREO_DEPTH_INPUT_SIZE", "224", "WIDTHxHEIGHT"),
    ("STEREO_DEPTH_INPUT_SIZE", "518x", "WIDTHxHEIGHT"), ("STEREO_DEPTH_INPUT_SIZE", "4x4", "between 8 and 4096"),
    ("STEREO_DEPTH_MULTIPLE", "0", "between 1 and 256"), ("STEREO_DEPTH_MULTIPLE", "x", "integer"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD)
def test_bad_value_is_one_line_naming_it(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={value!r}: ")
    assert words in message


def test_several_bad_values_still_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"STEREO_CRF": "99", "STEREO_BATCH": "-1"})
    message = str(info.value)
    assert "\n" not in message and "STEREO_CRF" in message and "STEREO_BATCH" in message


def test_onnx_needs_an_existing_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STEREO_DEPTH_MODEL is required"):
        load_settings({"STEREO_DEPTH": "onnx"})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings({"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(tmp_path / "nope.onnx")})


def test_depth_network_conventions(tmp_path: Path) -> None:
    s = load_settings({})
    assert (s.depth_normalize, s.depth_output, s.depth_input_size, s.depth_multiple) == (None, None, None, None)
    s = load_settings({"STEREO_DEPTH_NORMALIZE": "unit", "STEREO_DEPTH_OUTPUT": "depth",
                       "STEREO_DEPTH_INPUT_SIZE": "224x160"})
    assert (s.depth_normalize, s.depth_output, s.depth_input_size) == ("unit", "depth", (224, 160))
    assert load_settings({"STEREO_DEPTH_MULTIPLE": "32"}).depth_multiple == 32


def test_depth_network_conventions_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"STEREO_DEPTH_NORMALIZE": "unit", "STEREO_DEPTH_OUTPUT": "depth",
                        "STEREO_DEPTH_INPUT_SIZE": "224x160"}.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.depth_normalize, s.depth_output, s.depth_input_size, s.depth_multiple) == ("unit", "depth", (224, 160),
                                                                                         None)
    for value in ("224", "[224, 160]", "{"):  # not decoded as JSON: the same one line as any bad value
        monkeypatch.setenv("STEREO_DEPTH_INPUT_SIZE", value)
        with pytest.raises(ConfigError) as info:
            load_settings()
        assert str(info.value) == f"STEREO_DEPTH_INPUT_SIZE={value!r}: must be WIDTHxHEIGHT in pixels, e.g. 518x518"


def test_input_size_and_multiple_together_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"STEREO_DEPTH_INPUT_SIZE": "224x224", "STEREO_DEPTH_MULTIPLE": "32"})
    assert str(info.value) == ("STEREO_DEPTH_INPUT_SIZE=224x224 and STEREO_DEPTH_MULTIPLE=32 are both set: give one "
                               "(a fixed input size, or a multiple that free sizes are rounded to)")


def test_network_conventions_are_in_the_onnx_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"weights")
    onnx = {"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(path)}
    base = fingerprint(load_settings(onnx), "e")
    changed = {fingerprint(load_settings({**onnx, k: v}), "e") for k, v in [
        ("STEREO_DEPTH_NORMALIZE", "unit"), ("STEREO_DEPTH_OUTPUT", "depth"), ("STEREO_DEPTH_INPUT_SIZE", "224x224"),
        ("STEREO_DEPTH_MULTIPLE", "32")]}
    assert base not in changed and len(changed) == 4
    # the heuristic path ignores them: its fingerprint (and output) is unchanged
    assert fingerprint(load_settings({"STEREO_DEPTH_NORMALIZE": "unit"}), "h") == fingerprint(load_settings({}), "h")


def test_fingerprint_tracks_output_settings_only() -> None:
    base = fingerprint(load_settings({}), "h")
    assert base == fingerprint(load_settings({}), "h")
    assert len(base) == 16
    assert base == fingerprint(load_settings({"STEREO_BATCH": "32", "MAX_FRAME_PIXELS": "99999"}), "h")
    changed = {fingerprint(load_settings({k: v}), "h") for k, v in [
        ("STEREO_DIVERGENCE", "3"), ("STEREO_CONVERGENCE", "0.4"), ("STEREO_DEPTH_WIDTH", "128"), ("STEREO_SBS", "half"),
        ("STEREO_PRESET", "fast"), ("STEREO_CRF", "18"), ("STEREO_ENCODER_THREADS", "2")]}
    assert base not in changed and len(changed) == 7
    assert fingerprint(load_settings({}), "other-estimator") != base


def test_model_fingerprint_uses_estimator_version() -> None:
    s = load_settings({"STEREO_DEPTH": "heuristic"})
    assert StereoModel(s).fingerprint == fingerprint(s, "heuristic-1")
    default = load_settings({})
    model = StereoModel(default)
    shipped = model.estimator.version
    assert shipped.startswith("hybrid-1:onnx-2:827cfd93daccc20a:unit,depth,*x*/32:")  # the weights' sha256 prefix
    assert model.fingerprint == fingerprint(default, shipped) != fingerprint(s, "heuristic-1")


def test_settings_class_is_pydantic_settings() -> None:
    assert StereoSettings.model_config.get("frozen") is True
    assert StereoSettings.model_fields["divergence"].validation_alias == "STEREO_DIVERGENCE"


@pytest.mark.parametrize(("processes", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4)])
def test_opencv_gets_the_cores_divided_among_the_model_processes(processes: int, cores: int, threads: int) -> None:
    from video_worker.models.stereo.model import opencv_threads

    assert opencv_threads(processes, cores) == threads


def test_the_worker_factory_sets_opencv_threads_from_infer_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from video_worker.models.stereo.model import from_settings, opencv_threads
    from video_worker.settings import Settings

    before = cv2.getNumThreads()
    try:
        settings = Settings(input_bucket_name="a-b", output_bucket_name="c-d", segment_completions_table_name="e-f",
                            model="stereo", configured_infer_concurrency=2)
        assert isinstance(from_settings(settings), StereoModel)
        assert cv2.getNumThreads() == opencv_threads(2)
    finally:
        cv2.setNumThreads(before)
