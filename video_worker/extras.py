"""The optional extras of the package: what each brings, and the one line a bare install gets instead.

``pip install video-worker`` installs the worker and the bridge. Commands and
models that need more check here first and stop with one line naming the
extra (``ConfigError``: exit 2, no traceback)::

    video-worker: video-worker dev needs the emulator extra: pip install 'video-worker[emulator]' (missing: moto)
"""

from __future__ import annotations

import importlib.util

from video_worker.errors import ConfigError

#: Extra → the top-level modules it installs (``pyproject.toml``'s optional dependencies).
EXTRAS: dict[str, tuple[str, ...]] = {
    "emulator": ("moto",),
    "stereo": ("av", "numpy", "cv2"),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` this environment lacks."""
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def problem(extra: str, needed_by: str) -> str | None:
    """The one line saying ``needed_by`` needs ``extra`` and how to install it, or None if it is installed."""
    absent = missing(extra)
    if not absent:
        return None
    return (f"{needed_by} needs the {extra} extra: pip install 'video-worker[{extra}]' "
            f"(missing: {', '.join(absent)})")


def require(extra: str, needed_by: str) -> None:
    """Raise ``ConfigError`` (one line) unless ``extra`` is installed."""
    line = problem(extra, needed_by)
    if line:
        raise ConfigError(line)
