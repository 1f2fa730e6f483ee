"""Test helpers: the Pictify API emulator, and pointing an app at it.

The pytest plugin beside it gives ``pictify_emulator`` (one per test) and
``pictify_emulator_session`` (one per run); :mod:`.worker` runs a real
``celery worker`` of your app.
"""

from pictify_tasks.testing.emulator import Fault, PictifyEmulator, RecordedRequest
from pictify_tasks.testing.helpers import (
    assert_cancelled_once,
    assert_not_cancelled,
    emulator_env,
    use_emulator,
)

__all__ = [
    "Fault",
    "PictifyEmulator",
    "RecordedRequest",
    "assert_cancelled_once",
    "assert_not_cancelled",
    "emulator_env",
    "use_emulator",
]
