"""The model interface: a file in, a file out.

A model is any object with ``infer(src, dst, mode)``. Models are found by
name in the entry-point group ``video_worker.models``; each entry point is a
zero-argument factory (a class or a function) returning a model. The name is
chosen at start-up with ``MODEL`` (default ``passthrough``).

A GPU model (StereoCrafter, ...) ships in its own package and registers::

    [project.entry-points."video_worker.models"]
    stereocrafter = "my_models.stereocrafter:StereoCrafterModel"
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from video_worker.errors import ConfigError
from video_worker.payloads import Mode

ENTRY_POINT_GROUP = "video_worker.models"


@runtime_checkable
class Model(Protocol):
    """Turns the 2D segment at ``src`` into the stereo segment at ``dst``.

    Implementations stream from disk to disk (segments are hundreds of MB),
    raise ``errors.ModelRejected`` for input they cannot process and
    ``errors.TransientError`` for failures worth retrying (e.g. GPU OOM).
    ``dst``'s folder exists; a partial ``dst`` is discarded by the caller.
    """

    def infer(self, src: Path, dst: Path, mode: Mode) -> None: ...


ModelFactory = Callable[[], Model]


def process_segment(data: bytes) -> bytes:
    """The seed's in-memory pass-through stub, kept for small inputs and callers of the old API."""
    return data


class PassthroughModel:
    """Copies the input unchanged, streaming with bounded memory (no GPU)."""

    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        with src.open("rb") as fin, dst.open("wb") as fout:
            shutil.copyfileobj(fin, fout, length=1024 * 1024)


class SimulatedAccelerator:
    """A stand-in for one GPU: busy ``seconds`` per segment, one inference per host at a time.

    The host-wide exclusivity is an ``flock`` on a file in the scratch
    directory, so it holds across processes and pool types. The output is the
    input's bytes. Configured by ``SIMULATED_INFER_SECONDS`` (default 1) and
    ``VIDEO_WORKER_SCRATCH_DIR`` (where the lock lives).
    """

    def __init__(self, seconds: float, lock_path: Path) -> None:
        self.seconds = seconds
        self.lock_path = lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> SimulatedAccelerator:
        try:
            seconds = float(os.environ.get("SIMULATED_INFER_SECONDS", "1"))
        except ValueError:
            raise ConfigError("SIMULATED_INFER_SECONDS must be a number of seconds") from None
        scratch = Path(os.environ.get("VIDEO_WORKER_SCRATCH_DIR") or Path(tempfile.gettempdir()) / "video-worker")
        return cls(seconds, scratch / ".accelerator.lock")

    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                deadline = time.monotonic() + self.seconds
                PassthroughModel().infer(src, dst, mode)
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


BUILTIN: dict[str, ModelFactory] = {
    "passthrough": PassthroughModel,
    "simulated": SimulatedAccelerator.from_env,
}


def _registered() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_models() -> list[str]:
    """Names of every model that ``MODEL`` may choose (besides ``package.module:factory`` paths)."""
    return sorted({*BUILTIN, *_registered()})


def is_import_path(name: str) -> bool:
    module, sep, attr = name.partition(":")
    return bool(sep) and all(part.isidentifier() for part in (*module.split("."), *attr.split(".")))


def _factory(name: str) -> ModelFactory:
    if name in BUILTIN:
        return BUILTIN[name]
    ep = _registered().get(name)
    if ep is not None:
        return ep.load()  # type: ignore[attr-defined, no-any-return]
    if is_import_path(name):
        module_name, _, attr = name.partition(":")
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        return target  # type: ignore[return-value]
    raise ConfigError(
        f"MODEL {name!r} is unknown; available models: {', '.join(available_models())} "
        "(or a package.module:factory path)"
    )


def load_model(name: str) -> Model:
    """Instantiate the model called ``name``; ``ConfigError`` lists the choices if unknown."""
    try:
        factory = _factory(name)
        model = factory()
    except ConfigError:
        raise
    except Exception as exc:  # a plug-in failing to import or build
        raise ConfigError(f"MODEL {name!r} failed to load: {exc}") from exc
    if not isinstance(model, Model):
        raise ConfigError(f"MODEL {name!r} gave {type(model).__name__}, which has no infer()")
    return model
