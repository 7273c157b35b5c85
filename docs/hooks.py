"""MkDocs hooks (mkdocs.yml ``hooks:``): generated settings tables, and the repository's reports as pages.

- A page's ``<!-- settings: module:Class -->`` marker becomes the table of that settings class
  (video_worker/ops/settings_table.py), so the documented variables, defaults and meanings are the code's.
- BENCHMARKS.md and RELIABILITY.md live at the repository root, where the benchmarks and the fault suite
  rewrite them; they are added to the site as benchmarks.md and reliability-report.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's package, also when another is installed
    sys.path.insert(0, str(ROOT))

from video_worker.ops.settings_table import SettingsTableError, fill_settings_tables  # noqa: E402

#: Repository files published as pages: site path -> file at the repository root.
INCLUDED = {"benchmarks.md": "BENCHMARKS.md", "reliability-report.md": "RELIABILITY.md"}


def on_files(files: Files, config: Any) -> Files:
    for src_uri, name in INCLUDED.items():
        files.append(File.generated(config, src_uri, content=(ROOT / name).read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    try:
        return fill_settings_tables(markdown)
    except SettingsTableError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None
