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

import shutil
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


def _registered() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_models() -> list[str]:
    """Names of every model that ``MODEL`` may choose."""
    return sorted({"passthrough", *_registered()})


def load_model(name: str) -> Model:
    """Instantiate the model called ``name``; ``ConfigError`` lists the choices if unknown."""
    if name == "passthrough":
        return PassthroughModel()
    ep = _registered().get(name)
    if ep is None:
        raise ConfigError(
            f"MODEL {name!r} is unknown; available models: {', '.join(available_models())}"
        )
    try:
        factory: ModelFactory = ep.load()  # type: ignore[attr-defined]
        model = factory()
    except Exception as exc:  # a plug-in failing to import or build
        raise ConfigError(f"MODEL {name!r} failed to load: {exc}") from exc
    if not isinstance(model, Model):
        raise ConfigError(f"MODEL {name!r} gave {type(model).__name__}, which has no infer()")
    return model
