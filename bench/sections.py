"""Writing one benchmark's section of ``BENCHMARKS.md`` without touching the others."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, heading: str, body: str) -> None:
    """Put ``body`` under ``heading`` (a ``## `` line) in ``path``: replacing that section up to the next heading of
    the same or a higher level, or appended at the end when the file has no such section."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = path.read_text().splitlines() if path.exists() else []
    new = [heading, "", *body.rstrip("\n").splitlines(), ""]
    if heading not in lines:
        path.write_text("\n".join([*lines, "", *new]).strip("\n") + "\n")
        return
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if _level(lines[i]) and _level(lines[i]) <= level),
               len(lines))
    path.write_text("\n".join([*lines[:start], *new, *lines[end:]]).rstrip("\n") + "\n")


def _level(line: str) -> int:
    """The heading level of a markdown line (0 when it is not a heading)."""
    hashes = len(line) - len(line.lstrip("#"))
    return hashes if hashes and line[hashes : hashes + 1] == " " else 0


def publish(text: str, heading: str, benchmarks: Path | None) -> None:
    """Print a benchmark's section and, given ``--write BENCHMARKS.md``, put it under ``heading`` there."""
    print(text)
    if benchmarks is not None:
        replace_section(benchmarks, heading, text)
