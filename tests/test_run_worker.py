"""run_worker takes the user's own app: how it finds what ``celery -A`` must import.

The examples (test_examples.py) start real workers of their own apps with it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from pictify_tasks.testing.worker import _target, run_worker


@pytest.fixture
def user_package(tmp_path: Path) -> Iterator[str]:
    """A package ``userproj`` in a folder of its own, with its app in ``userproj.celery``."""
    package = tmp_path / "userproj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "celery.py").write_text(
        "from celery import Celery\napp = Celery('userproj', set_as_current=False)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield str(tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "userproj" or n.startswith("userproj.")]:
            del sys.modules[name]


def test_an_app_object_is_found_in_the_module_that_holds_it(user_package: str) -> None:
    app = importlib.import_module("userproj.celery").app
    assert _target(app) == ("userproj.celery:app", [user_package])


def test_a_name_is_passed_as_it_is() -> None:
    assert _target("proj.celery:app") == ("proj.celery:app", [])


def test_an_app_no_module_holds_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    orphan = Celery("orphan", set_as_current=False)
    with (
        pytest.raises(ValueError, match=r"pass what `celery -A` takes instead"),
        run_worker(orphan, log_dir=tmp_path),
    ):
        pass


def test_an_app_given_by_name_needs_its_broker(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="needs broker_url="),
        run_worker("proj.celery:app", log_dir=tmp_path),
    ):
        pass
