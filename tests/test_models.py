"""The model registry (``inference``) and the built-in models (``models/``)."""

from __future__ import annotations

import fcntl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.stack import wait_until
from video_worker.errors import ConfigError
from video_worker.inference import ENTRY_POINT_GROUP, available_models, load_model, process_segment
from video_worker.models.passthrough import PassthroughModel
from video_worker.models.simulated import SimulatedAccelerator
from video_worker.ops.sample import sample_segment
from video_worker.settings import Settings

BASE = {"input_bucket_name": "in-b", "output_bucket_name": "out-b", "segment_completions_table_name": "tbl"}


def test_process_segment_is_the_seed_pass_through() -> None:
    data = sample_segment(10_000)
    assert process_segment(data) == data


def test_passthrough_model_copies_the_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    data = sample_segment(3 * 1024 * 1024 + 17, seed=4)
    src.write_bytes(data)
    PassthroughModel().infer(src, dst, "sbs")
    assert dst.read_bytes() == data


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[str]:
    """A real installed-distribution entry point in the group video_worker.models."""
    pkg = tmp_path / "fake_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        "class Reverse:\n"
        "    def infer(self, src: Path, dst: Path, mode: str) -> None:\n"
        "        dst.write_bytes(src.read_bytes()[::-1] + mode.encode())\n"
        "def broken():\n"
        "    raise RuntimeError('no GPU found')\n"
        "def not_a_model():\n"
        "    return 42\n"
    )
    dist = tmp_path / "fake_models-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nreverse = fake_models:Reverse\nbroken = fake_models:broken\n"
        "weird = fake_models:not_a_model\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "reverse"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("fake_models", None)


def test_plugin_models_are_found_by_entry_point(plugin: str, tmp_path: Path) -> None:
    assert {"passthrough", "reverse", "broken"} <= set(available_models())
    model = load_model("reverse")
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"abc")
    model.infer(src, dst, "anaglyph")
    assert dst.read_bytes() == b"cbaanaglyph"


def test_unknown_model_lists_choices(plugin: str) -> None:
    with pytest.raises(ConfigError, match=r"MODEL 'gpu9000' is unknown; available models: .*passthrough.*reverse"):
        load_model("gpu9000")


def test_plugin_that_fails_to_build_is_a_config_error(plugin: str) -> None:
    with pytest.raises(ConfigError, match=r"MODEL 'broken' failed to load: RuntimeError: no GPU found"):
        load_model("broken")
    with pytest.raises(ConfigError, match="MODEL 'weird' gave int, which has no infer"):
        load_model("weird")


def test_model_by_import_path(tmp_path: Path) -> None:
    model = load_model("video_worker.models.passthrough:PassthroughModel")
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"xyz")
    model.infer(src, dst, "sbs")
    assert dst.read_bytes() == b"xyz"
    with pytest.raises(ConfigError, match="failed to load"):
        load_model("video_worker.models.passthrough:NoSuchFactory")
    with pytest.raises(ValueError, match="not importable"):
        Settings(**BASE, model="no_such_package.models:Factory")


def _held(lock: Path) -> bool:
    """Whether another holder has the accelerator's lock (a non-blocking flock fails)."""
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_simulated_accelerator_holds_the_host_lock_while_it_infers(tmp_path: Path) -> None:
    """One inference per host at a time, across processes: an flock on a file in the scratch directory."""
    settings = Settings(**BASE, scratch_dir=tmp_path / "scratch", simulated_infer_seconds=30)
    model = SimulatedAccelerator.from_settings(settings)
    assert model.lock_path == tmp_path / "scratch" / ".accelerator.lock" and not _held(model.lock_path)
    src = tmp_path / "in"
    src.write_bytes(b"frame" * 100)
    model.seconds = 0.5
    busy = threading.Thread(target=model.infer, args=(src, tmp_path / "out", "sbs"))
    busy.start()
    wait_until(lambda: _held(model.lock_path), 10, "the inference to hold the lock")
    busy.join()
    assert not _held(model.lock_path) and (tmp_path / "out").read_bytes() == src.read_bytes()


def test_the_simulated_model_is_configured_by_settings(tmp_path: Path) -> None:
    model = load_model("simulated", Settings(**BASE, scratch_dir=tmp_path, simulated_infer_seconds=0.25))
    assert isinstance(model, SimulatedAccelerator) and model.seconds == 0.25


def test_a_built_in_model_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from video_worker import extras, inference

    monkeypatch.setitem(extras.EXTRAS, "stereo", ("av", "no_such_video_library"))
    message = r"MODEL 'stereo' needs the stereo extra: pip install 'video-worker\[stereo\]' " \
              r"\(missing: no_such_video_library\)"
    with pytest.raises(ConfigError, match=message):
        inference.check_model("stereo")
    with pytest.raises(ConfigError, match=message):
        load_model("stereo")


def test_the_stereo_model_checks_its_settings_before_anything_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from video_worker import inference

    monkeypatch.setenv("STEREO_CRF", "99")
    with pytest.raises(ConfigError, match=r"^STEREO_CRF='99': must be between 0 and 51$"):
        inference.check_model("stereo")
    monkeypatch.setenv("STEREO_CRF", "23")
    inference.check_model("stereo")


def test_progress_is_given_only_to_a_model_that_declares_it_reports_progress(tmp_path: Path) -> None:
    from video_worker.inference import infer, reports_progress

    calls: list[str] = []

    class Reporting:
        reports_progress = True

        def infer(self, src: Path, dst: Path, mode: str, progress: Callable[[], None] | None = None) -> None:
            assert progress is not None
            progress()

    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    infer(Reporting(), src, tmp_path / "a.mp4", "sbs", None, progress=lambda: calls.append("step"))  # type: ignore[arg-type]
    assert calls == ["step"]
    passthrough = PassthroughModel()
    assert not reports_progress(passthrough)
    infer(passthrough, src, tmp_path / "b.mp4", "sbs", None, progress=lambda: calls.append("never"))  # no TypeError
    assert (tmp_path / "b.mp4").read_bytes() == b"x" and calls == ["step"]
