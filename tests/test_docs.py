"""The documentation site builds strictly, and every code sample in it runs.

Python samples written in a page run in order, one fresh process per page.
Samples included from ``examples/`` (``--8<--`` lines) run in
``test_examples.py``. A sample that cannot run here (a ``pip install``, a
command against your own project) says why, in a ``<!-- not run: ... -->``
comment on the line before it; a shell sample without one fails this test.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from pictify_tasks.configuration import SETTING_NAMES
from tests.conftest import require_module
from tests.workers import ROOT, run_python

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
SHELL = {"sh", "bash", "console", "shell"}
FENCE = re.compile(r"^```(\w*)")
NOT_RUN = re.compile(r"^<!-- not run: .+ -->$")
INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::(\w+))?"$')


@dataclass
class Sample:
    page: Path
    line: int
    language: str
    code: str
    marked_not_run: bool


def samples(page: Path) -> list[Sample]:
    found: list[Sample] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        before = lines[index - 1] if index else ""
        code = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Sample(page, index + 2, opening[1], code, bool(NOT_RUN.match(before))))
        index = end + 1
    return found


def test_the_site_builds_with_mkdocs_strict(tmp_path: Path) -> None:
    require_module("mkdocs")
    require_module("material")
    require_module("mkdocstrings")
    done = run_python(
        *("-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)),
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (tmp_path / "reference" / "index.html").read_text()
    for name in ("cancel_batch", "configure", "use_emulator", "assert_cancelled_once"):
        assert f'id="pictify_tasks.{name}"' in reference or f"testing.{name}" in reference, name
    changelog = (tmp_path / "changelog" / "index.html").read_text()
    assert "celery -A proj pictify" in changelog  # CHANGELOG.md was included
    for page in tmp_path.rglob("*.html"):
        visible = re.sub(r"<!--.*?-->", "", page.read_text(), flags=re.S)
        assert "TODO" not in visible and "not run:" not in visible, page


def written_python(page: Path) -> list[Sample]:
    """The page's python samples written in it (not included, not marked)."""
    return [
        s
        for s in samples(page)
        if s.language == "python" and not s.marked_not_run and not INCLUDE.match(s.code.strip())
    ]


WITH_PYTHON = [page for page in PAGES if written_python(page)]


def test_the_pages_with_samples_are_found() -> None:
    assert {p.name for p in WITH_PYTHON} >= {"quickstart.md", "configuration.md", "testing.md"}


@pytest.mark.parametrize("page", WITH_PYTHON, ids=[p.name for p in WITH_PYTHON])
def test_every_python_sample_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    runnable = written_python(page)
    script = tmp_path / "run_samples.py"
    script.write_text(
        "namespace = {'__name__': '__docs__'}\n"
        + "".join(
            f"exec(compile({s.code!r}, {f'{s.page.name}:{s.line}'!r}, 'exec'), namespace)\n"
            for s in runnable
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICTIFY_")}
    done = run_python(str(script), cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_other_sample_is_included_from_a_tested_example_or_says_why_not() -> None:
    problems = []
    for page in PAGES:
        for sample in samples(page):
            where = f"{page.name}:{sample.line}"
            included = INCLUDE.match(sample.code.strip())
            if included:
                path = ROOT / included[1]
                if not path.is_file():
                    problems.append(f"{where}: includes a missing file {included[1]}")
                elif included[1].startswith("examples/") is False and path.suffix == ".py":
                    problems.append(f"{where}: includes code from outside examples/")
                elif included[2] and f"[start:{included[2]}]" not in path.read_text():
                    problems.append(f"{where}: no section {included[2]} in {included[1]}")
            elif sample.language in SHELL and not sample.marked_not_run:
                problems.append(f"{where}: a shell sample without <!-- not run: why -->")
    assert problems == []


def test_the_configuration_page_lists_every_setting_with_its_variable() -> None:
    table = (DOCS / "configuration.md").read_text()
    for name in sorted(SETTING_NAMES):
        row = re.search(
            rf"^\| `pictify_{name}` \| `PICTIFY_{name.upper()}` \| ([^|]+) \|", table, re.M
        )
        assert row, f"pictify_{name} is missing from docs/configuration.md"
