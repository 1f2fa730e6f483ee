"""Point an app at other settings at run time, and have them read again.

Settings are read once per app and process (see :mod:`pictify_tasks._runtime`),
which is what a worker wants and what a test suite does not: a test that
starts its own emulator must be able to point the app at it. These two
functions are the public way to do that.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pictify_tasks._runtime import runtime_for
from pictify_tasks.errors import ImproperlyConfigured
from pictify_tasks.settings import PictifySettings

__all__ = ["SETTING_NAMES", "configure", "reload_settings"]

#: The names :func:`configure` accepts: ``pictify_<name>`` in the Celery config.
SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(PictifySettings))


def reload_settings(app: Any) -> PictifySettings:
    """Read ``app``'s pictify settings again, in this process, and return them.

    The state store and the HTTP client are rebuilt on next use. Raises
    :class:`~pictify_tasks.ImproperlyConfigured` when a value is bad.
    """
    return runtime_for(app).reload()


def configure(app: Any, **settings: Any) -> PictifySettings:
    """Set ``pictify_<name>`` in ``app.conf`` for each keyword, then re-read the settings.

    ``configure(app, api_key="pk_test_...", base_url="http://127.0.0.1:8765")``.
    A value of ``None`` unsets the setting (the environment, then the default,
    apply again). Names are those of :class:`~pictify_tasks.PictifySettings`;
    an unknown one is a ``TypeError``. When the new values are refused, the
    old ones are put back and :class:`~pictify_tasks.ImproperlyConfigured`
    is raised. Only this process sees the change: a worker already running
    keeps its own settings.
    """
    unknown = sorted(set(settings) - SETTING_NAMES)
    if unknown:
        raise TypeError(
            f"configure() got unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(SETTING_NAMES))}"
        )
    previous = {name: app.conf.get(f"pictify_{name}") for name in settings}
    _set(app, settings)
    try:
        return reload_settings(app)
    except ImproperlyConfigured:
        _set(app, previous)
        runtime_for(app).reset()
        raise


def _set(app: Any, settings: dict[str, Any]) -> None:
    for name, value in settings.items():
        app.conf[f"pictify_{name}"] = value
