"""Test helpers: the Pictify API emulator (the pytest plugin lives beside it).

The names are imported lazily (PEP 562) so that
``python -m pictify_tasks.testing.emulator`` does not find its own module
already imported by this package, which makes runpy warn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pictify_tasks.testing.emulator import Fault, PictifyEmulator, RecordedRequest

__all__ = ["Fault", "PictifyEmulator", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pictify_tasks.testing import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
