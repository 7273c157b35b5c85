"""The docs site (mkdocs.yml, docs/): generated settings tables that list every setting, a strict build, and a
README that stays a front door whose links and commands work."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from video_worker.models.stereo.settings import StereoSettings
from video_worker.ops.settings_table import (
    SettingsTableError,
    default_text,
    env_names,
    fill_settings_tables,
    settings_table,
)
from video_worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SETTINGS_CLASSES = {"video_worker.settings:Settings": Settings,
                    "video_worker.models.stereo.settings:StereoSettings": StereoSettings}


def _rows(table: str) -> dict[str, list[str]]:
    """The table's rows by their first environment variable: [variable, default, meaning]."""
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[re.match(r"`(\w+)`", cells[0]).group(1)] = cells  # type: ignore[union-attr]
    return rows


@pytest.mark.parametrize("cls", SETTINGS_CLASSES.values(), ids=SETTINGS_CLASSES.keys())
def test_every_setting_is_a_row_with_its_default_and_meaning(cls: type[BaseSettings]) -> None:
    rows = _rows(settings_table(cls))
    assert len(rows) == len(cls.model_fields)
    for name, info in cls.model_fields.items():
        variable = env_names(name, info)[0]
        assert variable in rows, f"{variable} ({cls.__name__}.{name}) is not in the table"
        _, default, meaning = rows[variable]
        assert default == default_text(info)
        assert " ".join(info.description.split())[:40] in meaning  # type: ignore[union-attr]


@pytest.mark.parametrize("marker", SETTINGS_CLASSES)
def test_a_docs_page_shows_each_settings_table(marker: str) -> None:
    pages = [page.name for page in DOCS.glob("*.md") if f"<!-- settings: {marker} -->" in page.read_text()]
    assert pages, f"no page in docs/ has the marker of {marker}"


def test_defaults_read_as_one_would_set_them() -> None:
    rows = _rows(settings_table(Settings))
    assert rows["INPUT_BUCKET_NAME"][1] == "required"
    assert rows["METRICS_PORT"][1] == "unset"
    assert rows["CHAIN_AFFINITY"][1] == "`on`"
    assert rows["VIDEO_WORKER_SCRATCH_DIR"][1] == "`$TMPDIR/video-worker`"
    assert rows["STAGE_TIME_LIMITS"][1] == "`{}`"
    assert rows["PUBLISH_PATIENCE_SECONDS"][1] == "`60`"
    assert rows["AWS_REGION"][0] == "`AWS_REGION` (or `AWS_DEFAULT_REGION`)"
    assert rows["WORKER_POOL"][2].endswith("; one of `threads`, `prefork`, `solo`")


def test_a_setting_without_a_description_is_refused_by_name() -> None:
    class Undocumented(BaseSettings):
        documented: int = Field(1, validation_alias="DOCUMENTED", description="says what it is")
        mode: Literal["a", "b"] = Field("a", validation_alias="SILENT_MODE")

    with pytest.raises(SettingsTableError, match=r"Undocumented\.mode has no description"):
        settings_table(Undocumented)


def test_a_marker_naming_no_settings_class_is_an_error() -> None:
    assert fill_settings_tables("no marker here") == "no marker here"
    with pytest.raises(SettingsTableError, match=r"video_worker\.settings:Nope"):
        fill_settings_tables("<!-- settings: video_worker.settings:Nope -->")
    with pytest.raises(SettingsTableError, match="not a pydantic-settings class"):
        fill_settings_tables("<!-- settings: video_worker.settings:AwsConfig -->")


def test_the_site_builds_strictly_with_every_setting_on_its_page() -> None:
    """``--strict``: a broken link or anchor, a page missing from the nav, or a hook error fails the build."""
    with tempfile.TemporaryDirectory() as site:
        out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
                             cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "WARNING" not in out.stderr, out.stderr[-3000:]
        configuration = (Path(site) / "configuration" / "index.html").read_text()
        stereo = (Path(site) / "stereo" / "index.html").read_text()
        assert "<!-- settings:" not in configuration + stereo
        for cls, html in ((Settings, configuration), (StereoSettings, stereo)):
            missing = [env_names(name, info)[0] for name, info in cls.model_fields.items()
                       if f"<code>{env_names(name, info)[0]}</code>" not in html]
            assert missing == []
        assert "Benchmarks" in (Path(site) / "benchmarks" / "index.html").read_text()
        assert (Path(site) / "reliability-report" / "index.html").is_file()
        assert not (Path(site) / "hooks.py").exists()


README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_a_front_door_with_the_two_commands_ci_runs() -> None:
    """``.ci/run`` installs as the README says and runs its test command: both stay word for word."""
    assert len(README.splitlines()) <= 200
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/video-worker dev --demo" in README
    assert "\n.venv/bin/pytest\n" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pip install --quiet -e '.[dev]'" in ci and "\n.venv/bin/pytest\n" in ci
    assert "mkdocs build --strict" in ci


def test_readme_links_to_files_that_exist() -> None:
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in link]
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


#: Top-level names a path in the docs may start with: the repository's and the package's folders and files.
_KNOWN_ROOTS = {p.name for p in ROOT.iterdir()} | {p.name for p in (ROOT / "video_worker").iterdir()}


@pytest.mark.parametrize("page", [*sorted(DOCS.glob("*.md")), ROOT / "README.md"], ids=lambda p: p.name)
def test_paths_named_in_the_docs_exist(page: Path) -> None:
    """`video_worker/worker/affinity.py`, `tests/faults`, `models/stereo/orient.py`: what a reader is sent to
    open is there (paths of other projects, such as `celery/events/event.py`, are not checked)."""
    missing = []
    for ref in re.findall(r"`([\w.-]+(?:/[\w.-]+)+/?)`", page.read_text(encoding="utf-8")):
        if ref.split("/")[0] not in _KNOWN_ROOTS:
            continue
        if not any(path.exists() for path in (ROOT / ref, ROOT / "video_worker" / ref)):
            missing.append(ref)
    assert missing == []
