"""The model registry: ``MODEL`` names a model; this builds it.

A model is any object with ``infer(src, dst, mode)`` (``ports.Model``). The
built-in ones live in ``models/`` and are named here by import path, so
choosing one imports only it. Other models are found by name in the
entry-point group ``video_worker.models`` (a zero-argument factory: a class or
a function) or given as ``package.module:factory``.

A GPU model (StereoCrafter, ...) ships in its own package and registers::

    [project.entry-points."video_worker.models"]
    stereocrafter = "my_models.stereocrafter:StereoCrafterModel"
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from video_worker import extras
from video_worker.errors import ConfigError
from video_worker.ports import Model
from video_worker.segments import Mode

#: What a factory that takes an argument is given: the deployment's ``settings.Settings`` (not imported here:
#: ``settings`` validates ``MODEL`` with this module), passed through as is.
ModelSettings = Any

ENTRY_POINT_GROUP = "video_worker.models"

#: Built-in models: name → ``module:factory``; a factory that takes an argument is given the ``Settings``.
BUILTIN: dict[str, str] = {
    "passthrough": "video_worker.models.passthrough:PassthroughModel",
    "simulated": "video_worker.models.simulated:SimulatedAccelerator.from_settings",
    "stereo": "video_worker.models.stereo.model:from_settings",
}
#: The extra a built-in model needs that a bare install lacks (``extras.EXTRAS``): name → extra.
MODEL_EXTRAS: dict[str, str] = {"stereo": "stereo"}
#: Built-in models that run on the CPU: by default one inference per core (``default_infer_concurrency``).
CPU_MODELS: frozenset[str] = frozenset({"stereo"})
#: Built-in models one instance of which converts several segments at once in threads (one loaded network).
THREAD_SAFE: frozenset[str] = frozenset({"stereo"})
#: A built-in model's start-up check of its own settings (cheap: no model is built): name → ``module:function``.
CHECKS: dict[str, str] = {
    "stereo": "video_worker.models.stereo.ort_device:check_settings",
}


def process_segment(data: bytes) -> bytes:
    """The seed's in-memory pass-through stub, kept for small inputs and callers of the old API."""
    return data


def missing_extra(name: str) -> str | None:
    """The one line naming the extra a built-in model needs and is not installed, or None."""
    extra = MODEL_EXTRAS.get(name)
    return extras.problem(extra, f"MODEL {name!r}") if extra else None


def check_model(name: str) -> None:
    """Check, without building it, that the model can be built here: its extra, its own settings.

    Raises ``ConfigError`` (one line). Called when a worker starts, before any process builds the model.
    """
    problem = missing_extra(name)
    if problem:
        raise ConfigError(problem)
    if name in CHECKS:
        _resolve(CHECKS[name])()


def _registered() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_models() -> list[str]:
    """Names of every model that ``MODEL`` may choose (besides ``package.module:factory`` paths)."""
    return sorted({*BUILTIN, *_registered()})


def is_import_path(name: str) -> bool:
    module, sep, attr = name.partition(":")
    return bool(sep) and all(part.isidentifier() for part in (*module.split("."), *attr.split(".")))


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def _factory(name: str) -> Callable[..., Any]:
    if name in BUILTIN:
        return _resolve(BUILTIN[name])
    ep = _registered().get(name)
    if ep is not None:
        return ep.load()  # type: ignore[no-any-return]
    if is_import_path(name):
        return _resolve(name)
    raise ConfigError(
        f"MODEL {name!r} is unknown; available models: {', '.join(available_models())} "
        "(or a package.module:factory path)"
    )


def load_model(name: str, settings: ModelSettings | Callable[[], ModelSettings] | None = None) -> Model:
    """Build the model called ``name``; ``ConfigError`` (one line) if it is unknown or fails to build.

    A factory that takes an argument is given ``settings`` (or what calling it returns: the settings are then
    built only for a model that needs them).
    """
    problem = missing_extra(name)
    if problem:
        raise ConfigError(problem)
    try:
        factory = _factory(name)
        takes_settings = settings is not None and takes_an_argument(factory)
        if takes_settings and callable(settings):
            settings = settings()
        model = factory(settings) if takes_settings else factory()
    except ConfigError:
        raise
    except Exception as exc:  # a plug-in failing to import or build
        raise ConfigError(f"MODEL {name!r} failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, Model):
        raise ConfigError(f"MODEL {name!r} gave {type(model).__name__}, which has no infer()")
    return model


def takes_an_argument(factory: Callable[..., Any]) -> bool:
    """True when ``factory`` has a parameter without a default (a factory of ``MODEL`` or ``STEREO_DEPTH`` is then
    given the settings)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def context_frames(model: Model) -> int:
    """Frames of the previous segment ``model`` reads before a segment (``ports.Model``); 0 if it takes none."""
    value = getattr(model, "context_frames", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def reports_progress(model: Model) -> bool:
    """Whether ``model`` declares ``reports_progress = True``: its ``infer`` then takes ``progress=``, a
    zero-argument callable it calls whenever its work advances (``ports.Model``)."""
    return getattr(model, "reports_progress", False) is True


def infer(model: Model, src: Path, dst: Path, mode: Mode, context: Path | None,
          progress: Callable[[], None] | None = None) -> None:
    """``model.infer``, given ``context`` (the previous segment) only when the model declares it reads one, and
    ``progress`` only when it declares it reports progress."""
    options: dict[str, Any] = {}
    if context is not None and context_frames(model):
        options["context"] = context
    if progress is not None and reports_progress(model):
        options["progress"] = progress
    model.infer(src, dst, mode, **options)


#: CPU time of a pipelined conversion's slowest stage (the encoder) per frame, as a share of the CPU's whole cost
#: per frame (decode + render + encode), measured by ``bench/pipeline.py`` (BENCHMARKS.md, "Stereo: the pipelined
#: converter": 7.1 of 10.7 ms at 640x360 sbs). One conversion keeps about 1 / this many cores busy.
SLOWEST_STAGE_SHARE = 0.66


def default_infer_concurrency(name: str, cores: int | None = None, device: str | None = None) -> int:
    """Inferences at a time when ``INFER_CONCURRENCY`` is unset.

    A CPU model (``MODEL=stereo``): one per core (depth runs on the cores too). The same model with its depth
    network on an accelerator (``device`` not ``cpu``): enough conversions to keep the cores busy, plus one to
    cover segment starts and ends: ``ceil(cores x SLOWEST_STAGE_SHARE) + 1`` (``bench/pipeline.py``: a pipelined
    conversion goes at the pace of its encoder and keeps ~1.5 cores busy; more conversions than this add memory,
    not frames/s), all in one model process sharing the network (``default_infer_per_process``). Else 1.
    """
    if name not in CPU_MODELS:
        return 1
    available = max(1, cores if cores is not None else (os.cpu_count() or 1))
    if on_accelerator(device):
        return math.ceil(available * SLOWEST_STAGE_SHARE) + 1
    return available


def on_accelerator(device: str | None) -> bool:
    """Whether a ``STEREO_DEVICE`` value names an accelerator (anything but ``cpu`` or unset)."""
    return bool(device) and str(device).strip().lower() not in ("cpu", "")


def default_infer_per_process(name: str, concurrency: int, device: str | None = None) -> int:
    """Inferences at a time in one model process when ``INFER_PER_PROCESS`` is unset.

    1 (one process per inference: processes scale across the cores without the GIL), except for a built-in
    model whose depth network runs on an accelerator (``device``, e.g. ``cuda``; not ``cpu``): all ``concurrency``
    inferences then share one process and one copy of the network in the device's memory (``THREAD_SAFE``).
    """
    if name in THREAD_SAFE and on_accelerator(device):
        return max(1, concurrency)
    return 1
