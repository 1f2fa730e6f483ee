"""What a user installs: the sdist's contents and metadata, ``python -m pictify_tasks``."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.workers import ROOT, run_python


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    """The sdist, built from this checkout with the installed build backend (no download)."""
    require_module("build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [archive] = out.glob("*.tar.gz")
    return tarfile.open(archive)


def _members(sdist: tarfile.TarFile) -> set[str]:
    return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def test_the_sdist_ships_the_package_and_its_documents_but_no_tests(
    sdist: tarfile.TarFile,
) -> None:
    members = _members(sdist)
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= members
    assert {"pictify_tasks/py.typed", "pictify_tasks/cli.py", "pictify_tasks/__main__.py"} <= (
        members
    )
    assert "pictify_tasks/testing/emulator/app.py" in members
    # Its tests need Redis, RabbitMQ and real workers: they live in the repository.
    assert not [m for m in members if m.startswith(("tests/", "examples/", "docs/"))]


def test_the_metadata_declares_license_extras_urls_and_entry_points(
    sdist: tarfile.TarFile,
) -> None:
    [info] = [
        m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("PKG-INFO")
    ]
    handle = sdist.extractfile(info)
    assert handle is not None
    metadata = email.message_from_bytes(handle.read())
    assert metadata["License-Expression"] == "MIT"  # PEP 639, not the deprecated table
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert float(metadata["Metadata-Version"]) >= 2.4
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"redis", "metrics", "docs", "test", "lint"} <= extras
    requirements = metadata.get_all("Requires-Dist") or []
    assert 'celery[redis]>=5.3; extra == "redis"' in requirements
    assert any(r.startswith("prometheus-client") and "metrics" in r for r in requirements)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Framework :: Celery" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: one place
    entry_points = sdist.extractfile(
        next(m for m in sdist.getmembers() if m.name.endswith("egg-info/entry_points.txt"))
    )
    assert entry_points is not None
    text = entry_points.read().decode()
    assert "[celery.commands]\npictify = pictify_tasks.cli:pictify" in text


def test_the_license_file_is_mit_as_declared() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_python_m_pictify_tasks_runs_the_demo(tmp_path: Path) -> None:
    """From any folder, as from an installed wheel: no Makefile, no service."""
    done = run_python("-m", "pictify_tasks", "demo", cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pictify emulator at http://127.0.0.1:" in done.stdout
    assert "outcome=cancelled" in done.stdout
    assert "batch(es) -> cancelled" in done.stdout
    usage = run_python("-m", "pictify_tasks", cwd=tmp_path, timeout=60)
    assert usage.returncode == 2 and "demo" in usage.stdout
