"""The public ways to point an app at other settings, and the testing helpers built on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from celery import Celery

import pictify_tasks
from pictify_tasks import ImproperlyConfigured, Scope, configure, reload_settings
from pictify_tasks._runtime import runtime_for
from pictify_tasks.settings import PictifySettings
from pictify_tasks.store import MemoryStore, RedisStore
from pictify_tasks.testing import (
    PictifyEmulator,
    assert_cancelled_once,
    assert_not_cancelled,
    emulator_env,
    use_emulator,
)

pytest_plugins = ["pytester"]


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("configure-test", broker="memory://", set_as_current=False)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    pictify_tasks.install(app)
    yield app
    pictify_tasks.uninstall(app)


def _cancel(app: Celery, batch_id: str) -> dict[str, object]:
    return dict(app.tasks["pictify.cancel_batch"].delay(batch_id).get())


def test_configure_sets_the_config_and_rereads_it(app: Celery) -> None:
    first = runtime_for(app).settings
    settings = configure(app, base_url="http://127.0.0.1:1/", timeout="3", revoke_scope="task")
    assert app.conf.pictify_base_url == "http://127.0.0.1:1/"
    assert (settings.base_url, settings.timeout, settings.revoke_scope) == (
        "http://127.0.0.1:1",
        3.0,
        Scope.TASK,
    )
    assert runtime_for(app).settings is settings and settings is not first


def test_none_unsets_a_setting_so_the_environment_applies_again(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PICTIFY_TIMEOUT", "7")
    assert configure(app, timeout=2).timeout == 2.0
    assert configure(app, timeout=None).timeout == 7.0


def test_an_unknown_setting_is_a_type_error_naming_the_known_ones(app: Celery) -> None:
    with pytest.raises(TypeError, match=r"api_keyy.*known: api_key"):
        configure(app, api_keyy="pk_test_x")


def test_a_refused_value_leaves_the_old_settings_in_place(app: Celery) -> None:
    configure(app, timeout=4)
    with pytest.raises(ImproperlyConfigured, match="pictify_timeout"):
        configure(app, timeout="inf", base_url="http://127.0.0.1:2")
    assert app.conf.pictify_base_url is None
    assert runtime_for(app).settings.timeout == 4.0


def test_reload_settings_picks_up_a_changed_environment_and_rebuilds_the_store(
    app: Celery, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    configure(app, state_url=None)
    monkeypatch.setenv("PICTIFY_STATE_URL", "memory://")
    assert isinstance(runtime_for(app).store, MemoryStore)
    monkeypatch.setenv("PICTIFY_STATE_URL", redis_url)
    assert isinstance(runtime_for(app).store, MemoryStore)  # cached until re-read
    assert reload_settings(app).state_url == redis_url
    assert isinstance(runtime_for(app).store, RedisStore)


def test_use_emulator_moves_an_app_from_one_emulator_to_the_next(app: Celery) -> None:
    """The issue's case: one app, a fresh emulator per test; the second must be called."""
    for _ in range(2):
        with PictifyEmulator() as emulator:
            use_emulator(app, emulator)
            batch_id = emulator.create_batch()
            assert _cancel(app, batch_id)["outcome"] == "cancelled"
            assert_cancelled_once(emulator, batch_id)


def test_use_emulator_keeps_the_ledger_in_memory_unless_told(
    app: Celery, redis_url: str, key_prefix: str
) -> None:
    with PictifyEmulator() as emulator:
        assert use_emulator(app, emulator).state_url == "memory://"
        settings = use_emulator(app, emulator, state_url=redis_url, state_prefix=key_prefix)
        assert (settings.state_url, settings.state_prefix) == (redis_url, key_prefix)
        assert emulator_env(emulator, state_url=redis_url) == {
            "PICTIFY_API_KEY": emulator.api_key,
            "PICTIFY_BASE_URL": emulator.base_url,
            "PICTIFY_WEBHOOK_SECRET": emulator.webhook_secret,
            "PICTIFY_STATE_URL": redis_url,
        }


def test_use_emulator_and_emulator_env_give_the_emulators_webhook_secret(app: Celery) -> None:
    """A receiver set up by either accepts the emulator's deliveries."""
    with PictifyEmulator(webhook_secret="whsec_" + "s" * 20) as emulator:
        assert use_emulator(app, emulator).webhook_secret == (emulator.webhook_secret,)
        bare = Celery("env-only", set_as_current=False)
        from_env = PictifySettings.from_app(bare, environ=emulator_env(emulator))
        assert from_env.webhook_secret == (emulator.webhook_secret,)
        other = "whsec_" + "o" * 20
        assert use_emulator(app, emulator, webhook_secret=other).webhook_secret == (other,)


def test_assert_cancelled_once_fails_on_none_and_on_two(app: Celery) -> None:
    with PictifyEmulator() as emulator:
        use_emulator(app, emulator)
        never = emulator.create_batch()
        assert_not_cancelled(emulator, never)
        with pytest.raises(AssertionError, match=r"was not cancelled within 0\.05 s"):
            assert_cancelled_once(emulator, never, timeout=0.05)
        twice = emulator.create_batch()
        _cancel(app, twice)
        # A second cancel that is not a replay of the first (another key): the API runs it.
        answer = requests.post(
            f"{emulator.base_url}/templates/batch/{twice}/cancel",
            headers={"Authorization": f"Bearer {emulator.api_key}", "Idempotency-Key": "other"},
            timeout=5,
        )
        assert answer.ok
        with pytest.raises(AssertionError, match="executed 2 cancel request"):
            assert_cancelled_once(emulator, twice)
        with pytest.raises(AssertionError, match="was sent 2 cancel request"):
            assert_not_cancelled(emulator, twice)
        with pytest.raises(AssertionError, match="no batch 'nope'"):
            assert_cancelled_once(emulator, "nope")


def test_the_pytest_plugin_gives_a_session_emulator_and_a_per_test_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        SEEN = []

        def test_one(pictify_emulator_session, pictify_emulator):
            SEEN.append(pictify_emulator_session.base_url)
            SEEN.append(pictify_emulator.base_url)

        def test_two(pictify_emulator_session, pictify_emulator):
            assert pictify_emulator_session.base_url == SEEN[0]
            assert pictify_emulator.base_url != SEEN[1]
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
