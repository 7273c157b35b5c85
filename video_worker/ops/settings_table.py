"""The settings tables of the docs, generated from the settings models so they cannot drift.

A docs page holds a marker such as ``<!-- settings: video_worker.settings:Settings -->``; the MkDocs hook
(listed under ``hooks:`` in mkdocs.yml) replaces it with ``settings_table(...)`` of that class: one row per
field, its environment variable, its default, its description (``Field(description=...)``, or the field's
docstring) and, for a ``Literal`` field, the values it accepts.
"""

from __future__ import annotations

import importlib
import re
import tempfile
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

MARKER = re.compile(r"<!--\s*settings:\s*([\w.]+):(\w+)\s*-->")


class SettingsTableError(ValueError):
    """A marker names no settings class, or a field has no description to show."""


def env_names(name: str, info: FieldInfo) -> list[str]:
    """The environment variables a field is read from, the first one preferred."""
    alias = info.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [name.upper()]


def default_text(info: FieldInfo) -> str:
    """The default as one would write it in the environment: ``required``, ``unset``, ``on``, ``{}``, ..."""
    if info.default_factory is not None:
        value: object = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Path):
        tmp = Path(tempfile.gettempdir())
        text = f"$TMPDIR/{value.relative_to(tmp).as_posix()}" if value.is_relative_to(tmp) else str(value)
        return f"`{text}`"
    if isinstance(value, dict | list | tuple):
        return f"`{value!r}`" if value else ("`{}`" if isinstance(value, dict) else "`[]`")
    return f"`{value}`"


def choices(info: FieldInfo) -> list[str]:
    """The values a ``Literal`` field (or an optional one) accepts; empty for any other type."""
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next((arg for arg in get_args(annotation) if arg is not type(None)), None)
    return [str(value) for value in get_args(annotation)] if get_origin(annotation) is Literal else []


def _cell(text: str) -> str:
    """Table-safe: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def settings_table(settings_cls: type[BaseSettings]) -> str:
    """A Markdown table of every field of ``settings_cls``: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in settings_cls.model_fields.items():
        if not info.description:
            raise SettingsTableError(f"{settings_cls.__name__}.{name} has no description to document it with")
        first, *others = env_names(name, info)
        variable = f"`{first}`" + "".join(f" (or `{other}`)" for other in others)
        meaning = info.description.rstrip()
        if values := choices(info):
            listed = ", ".join(f"`{value}`" for value in values)
            meaning += f" One of {listed}." if meaning.endswith(".") else f"; one of {listed}"
        rows.append(f"| {variable} | {_cell(default_text(info))} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def load_settings_class(module: str, name: str) -> type[BaseSettings]:
    """The class a marker names (``module:Class``); ``SettingsTableError`` if it is not a settings model."""
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SettingsTableError(f"settings marker {module}:{name}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseSettings)):
        raise SettingsTableError(f"settings marker {module}:{name}: not a pydantic-settings class")
    return obj


def fill_settings_tables(markdown: str) -> str:
    """``markdown`` with every settings marker replaced by its table."""
    return MARKER.sub(lambda m: settings_table(load_settings_class(m.group(1), m.group(2))), markdown)
