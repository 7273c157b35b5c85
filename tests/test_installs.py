"""A bare ``pip install video-worker`` (no extras): what needs an extra says so in one line and exits 2.

The bare install is simulated faithfully and offline: a directory holding only the distributions that
``pyproject.toml``'s base dependencies pull in (their closure, resolved from what is installed here, with
markers and extras), and ``python -S`` so nothing else on this machine's ``sys.path`` is seen.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        wanted = set(requirement.extras)
        if name in found and not wanted:
            continue
        dist = found.get(name) or metadata.distribution(requirement.name)
        found[name] = dist
        for text in dist.requires or []:
            for each in wanted | {""}:
                todo.append((Requirement(text), each))
    return found


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory of the base dependencies only (symlinks to the installed files)."""
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    view = tmp_path_factory.mktemp("bare-site")
    for dist in _closure(base).values():
        for file in dist.files or []:
            top = file.parts[0]
            if top.endswith((".pth", "__pycache__")) or top == ".." or (view / top).exists():
                continue
            (view / top).symlink_to(Path(str(dist.locate_file(top))))
    return view


def _run(bare: Path, tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PYTHONPATH": f"{bare}:{REPO}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                   "PYTHONWARNINGS": "ignore",  # tests may run as root: Celery's warning about it is not ours
                   "INPUT_BUCKET_NAME": "in-bucket", "OUTPUT_BUCKET_NAME": "out-bucket",
                   "SEGMENT_COMPLETIONS_TABLE_NAME": "completions", **env}
    return subprocess.run([sys.executable, "-S", *argv], env=environment, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_the_view_is_a_bare_install(bare: Path, tmp_path: Path) -> None:
    """The base dependencies import; the extras' modules do not (else the tests below prove nothing)."""
    probe = ("import importlib.util as u, celery, kombu, boto3, pydantic, flower; "
             "print([m for m in ('moto', 'av', 'numpy', 'cv2', 'onnxruntime') if u.find_spec(m)])")
    out = _run(bare, tmp_path, "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("argv", "extra"), [
    (["-m", "video_worker", "dev"], "emulator"),
    (["-m", "video_worker", "dev", "--demo"], "emulator"),
    (["-m", "video_worker", "convert", "in.mp4", "out.mp4", "--mode", "sbs"], "stereo"),
    (["-m", "celery", "-A", "video_worker", "worker", "-P", "solo"], "stereo"),
])
def test_what_needs_an_extra_names_it_in_one_line(bare: Path, tmp_path: Path, argv: list[str], extra: str) -> None:
    out = _run(bare, tmp_path, *argv, MODEL="stereo")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert f"pip install 'video-worker[{extra}]'" in lines[0]


def test_a_bare_worker_without_model_stops_naming_the_converter_it_needs(bare: Path, tmp_path: Path) -> None:
    """The default ``MODEL`` is the converter: a bare install says what to add rather than copy 2D segments."""
    out = _run(bare, tmp_path, "-m", "celery", "-A", "video_worker", "worker", "-P", "solo")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("video-worker: MODEL 'stereo' needs the stereo extra: pip install "
                                  "'video-worker[stereo]' (missing: av, numpy, cv2)")


def test_the_bare_install_runs_the_worker_and_the_bridge_commands(bare: Path, tmp_path: Path) -> None:
    """What a bare install is for starts (up to needing AWS): ``--help`` of each command, the app loads."""
    for argv in (["-m", "video_worker", "--help"], ["-m", "video_worker", "bridge", "--help"],
                 ["-m", "celery", "-A", "video_worker", "report"]):
        out = _run(bare, tmp_path, *argv)
        assert out.returncode == 0, (argv, out.stderr)


def test_the_shipped_depth_weights_and_their_licence_are_package_data() -> None:
    """A non-editable install (the Docker image's) carries what ``STEREO_DEPTH=hybrid`` loads."""
    import fnmatch

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    stereo = REPO / "video_worker" / "models" / "stereo"
    shipped = sorted(p.relative_to(stereo).as_posix() for p in (stereo / "weights").iterdir())
    assert "weights/fastdepth-nyu-f32.onnx" in shipped and "weights/FASTDEPTH-LICENSE" in shipped
    for name in shipped:
        assert any(fnmatch.fnmatch(name, g) for g in globs["video_worker.models.stereo"]), name
