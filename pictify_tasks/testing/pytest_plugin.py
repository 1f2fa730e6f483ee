"""A pytest plugin (loaded automatically once the package is installed).

It gives users' own test suites a ``pictify_emulator`` fixture: a fresh
emulator of the batch endpoints on loopback for each test.
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
