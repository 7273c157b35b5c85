"""The deployed worker converts: the Dockerfile's variants install the converter, the compose stack runs it with
commands that exist, and ``MODEL``'s default is the converter. (No Docker engine here: the files are read as the
engine would read them, and what they run is run.)"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from video_worker.models.stereo.settings import load_settings as load_stereo_settings
from video_worker.ops.cli import build_parser
from video_worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict[str, list[str]]:
    """The Dockerfile's stages by name (``FROM ... AS name``), each as its instructions (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            match = re.fullmatch(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
            assert match, f"every stage is named: {line}"
            current = found.setdefault(match.group(2), [line])
        elif current:
            current.append(line)
    return found


def pip_installs(stage: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` in the stage's RUN instructions."""
    out = []
    for line in stage:
        if line.startswith("RUN "):
            for command in line[4:].split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    out.append(words[2:])
    return out


def env_of(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in stage:
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def test_both_variants_install_the_converter_and_cpu_is_the_default_build() -> None:
    found = stages()
    assert list(found)[-1] == "cpu"  # `docker build .` builds the last stage
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "stereo" in extras
    for name in ("cpu", "gpu"):
        installs = pip_installs(found[name])
        assert installs[0] == [".[stereo]"], (name, installs)
    gpu = found["gpu"]
    assert any("pip uninstall -y onnxruntime" in line for line in gpu)  # the GPU build replaces the CPU one
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:12\.\S+-cudnn-runtime-", text)
    assert gpu[0].split()[1] == "${CUDA_IMAGE}"
    # PyPI's onnxruntime-gpu is built for CUDA 13 from 1.27: on a CUDA 12 base it must stay below
    assert 'ARG ORT_GPU="onnxruntime-gpu>=1.20,<1.27"' in text and any('"$ORT_GPU"' in line for line in gpu)


def test_the_gpu_variant_sets_valid_settings() -> None:
    env = env_of(stages()["gpu"])
    assert env["STEREO_DEVICE"] == "cuda"
    assert load_stereo_settings({k: v for k, v in env.items() if k.startswith("STEREO_")}).device == "cuda"
    seed = {"INPUT_BUCKET_NAME": "in-b", "OUTPUT_BUCKET_NAME": "out-b", "SEGMENT_COMPLETIONS_TABLE_NAME": "tbl"}
    assert "INFER_CONCURRENCY" not in env  # the default for a network on the GPU: conversions that keep the cores busy
    gpu_host = Settings(**seed, MODEL="stereo", STEREO_DEVICE=env["STEREO_DEVICE"])  # type: ignore[arg-type]
    assert gpu_host.model_processes == 1  # one copy of the network in GPU memory
    assert gpu_host.infer_per_process == gpu_host.infer_concurrency >= 2


def compose() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def test_compose_runs_the_converter_with_valid_settings() -> None:
    services = compose()
    for name in ("worker", "worker-gpu"):
        env = services[name]["environment"]
        assert env["MODEL"] == "stereo"
        Settings(**{k: str(v) for k, v in env.items()})  # every value is a valid setting
    assert services["worker-gpu"]["build"]["target"] in stages()
    assert "build" in services["worker"] and services["worker"]["build"] == "."  # the CPU variant


def test_compose_commands_are_real_entry_points(capsys: pytest.CaptureFixture[str]) -> None:
    """Each service's command parses as the CLI would parse it (``--help`` of a real subcommand exits 0)."""
    for name, service in compose().items():
        command = service.get("command")
        if command is None:
            continue
        if command[0] == "video-worker":
            with pytest.raises(SystemExit) as info:
                build_parser().parse_args([*command[1:], "--help"])
            assert info.value.code == 0, name
        elif command[0] == "celery":
            assert command[1:3] == ["-A", "video_worker"] and command[3] in ("worker", "flower"), name
        else:
            pytest.fail(f"{name}: unknown command {command}")
    capsys.readouterr()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["video-worker"] == "video_worker.ops.cli:main"
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["no-such-command"])
    assert info.value.code == 2  # what a wrong command would do


def test_celery_finds_the_app_the_image_runs() -> None:
    """``celery -A video_worker worker``: the app loads, with the worker's tasks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INPUT_BUCKET_NAME": "in-b", "OUTPUT_BUCKET_NAME": "out-b",
           "SEGMENT_COMPLETIONS_TABLE_NAME": "tbl", "MODEL": "stereo"}
    code = ("from celery.app.utils import find_app; app = find_app('video_worker'); "
            "print(sorted(t for t in app.tasks if t.startswith('video_worker.')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'video_worker.infer'" in out.stdout


def test_the_default_model_is_the_converter() -> None:
    assert Settings.model_fields["model"].default == "stereo"


def test_dev_runs_the_converter_by_default(tmp_path: Path) -> None:
    """``video-worker dev`` without ``--demo`` and without ``MODEL``: the worker it starts runs ``stereo``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INPUT_", "OUTPUT_", "SEGMENT_"))}
    env.pop("MODEL", None)
    env["PYTHONPATH"] = str(ROOT)
    dev = subprocess.Popen([sys.executable, "-m", "video_worker", "dev", "--no-flower"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert dev.stdout is not None
        first = dev.stdout.readline()
        assert first.startswith("emulator: ") and "; model: stereo;" in first, first
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)
