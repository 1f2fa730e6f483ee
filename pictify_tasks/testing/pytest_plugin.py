"""A pytest plugin (loaded automatically once the package is installed).

It gives users' own test suites an emulator of the batch endpoints on
loopback: ``pictify_emulator``, a fresh one for each test, and
``pictify_emulator_session``, one for the whole run (cheaper; its batches
and request log carry over between tests unless a test calls ``reset()``).
Point an app at either with :func:`pictify_tasks.testing.use_emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pictify_tasks.testing.emulator import PictifyEmulator


@pytest.fixture
def pictify_emulator() -> Iterator[PictifyEmulator]:
    """A running :class:`PictifyEmulator`; point ``pictify_base_url`` at its ``base_url``."""
    with PictifyEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pictify_emulator_session() -> Iterator[PictifyEmulator]:
    """One running :class:`PictifyEmulator` for the whole test session."""
    with PictifyEmulator() as emulator:
        yield emulator
