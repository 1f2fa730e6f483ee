from __future__ import annotations

import pytest
from celery import Celery

import pictify_tasks
from pictify_tasks import ImproperlyConfigured, PictifySettings
from pictify_tasks.ratelimit import Rate
from pictify_tasks.testing import PictifyEmulator


def _app(**conf: object) -> Celery:
    app = Celery("settings-test", set_as_current=False)
    app.conf.update(conf)
    return app


def test_defaults() -> None:
    settings = PictifySettings.from_app(_app(broker_url="amqp://guest@localhost//"), environ={})
    assert settings.api_key is None
    assert settings.base_url == "https://api.pictify.io"
    assert settings.state_url is None
    assert settings.cancel_max_attempts is None  # no cap: the deadline bounds a cancel
    assert settings.cancel_deadline == 3600.0
    assert settings.retry_backoff_max == 60.0
    assert settings.retry_after_max == 300.0
    assert settings.sweep_interval == 60.0
    assert settings.revoke_scope == "workflow"


def test_app_config_wins_over_the_environment() -> None:
    app = _app(pictify_api_key="pk_test_conf", pictify_timeout=3)
    settings = PictifySettings.from_app(
        app,
        environ={
            "PICTIFY_API_KEY": "pk_test_env",
            "PICTIFY_TIMEOUT": "9",
            "PICTIFY_CANCEL_MAX_ATTEMPTS": "7",
        },
    )
    assert settings.api_key == "pk_test_conf"
    assert settings.timeout == 3.0
    assert settings.cancel_max_attempts == 7


def test_django_namespace_is_read() -> None:
    class DjangoSettings:
        CELERY_BROKER_URL = "memory://"
        CELERY_PICTIFY_API_KEY = "pk_live_django"
        CELERY_PICTIFY_BASE_URL = "http://127.0.0.1:9999/"

    app = Celery("django-like", set_as_current=False)
    app.config_from_object(DjangoSettings, namespace="CELERY")
    settings = PictifySettings.from_app(app, environ={})
    assert settings.api_key == "pk_live_django"
    assert settings.base_url == "http://127.0.0.1:9999"


def test_state_defaults_to_a_redis_broker() -> None:
    redis_app = _app(broker_url="redis://127.0.0.1:6379/3")
    assert PictifySettings.from_app(redis_app, environ={}).state_url == "redis://127.0.0.1:6379/3"
    explicit = PictifySettings.from_app(
        redis_app, environ={"PICTIFY_STATE_URL": "redis://other:6379/1"}
    )
    assert explicit.state_url == "redis://other:6379/1"
    rabbit = _app(broker_url="amqp://guest:guest@127.0.0.1//")
    assert PictifySettings.from_app(rabbit, environ={}).state_url is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("pictify_timeout", "soon", "must be a number"),
        ("pictify_cancel_max_attempts", "many", "must be a whole number"),
        ("pictify_revoke_listener", "maybe", "must be a boolean"),
        ("pictify_timeout", 0, "greater than 0"),
        ("pictify_cancel_max_attempts", 0, "at least 1"),
        ("pictify_base_url", "ftp://x", "must be a URL"),
        ("pictify_base_url", "http://[::1", "cannot be parsed"),
        ("pictify_state_url", "redis://user:pw@[::1", "cannot be parsed"),
        ("pictify_state_url", "amqp://x", "must be a URL"),
        ("pictify_revoke_scope", "everything", "must be one of"),
        ("pictify_retry_backoff_max", -1, "greater than 0"),
        ("pictify_cancel_max_attempts", 2.5, "must be a whole number"),
        ("pictify_cancel_deadline", 0, "greater than 0"),
        ("pictify_cancel_deadline", "soon", "must be a number"),
        ("pictify_retry_after_max", -5, "greater than 0"),
        ("pictify_sweep_interval", -1, "0 .to switch it off. or greater"),
        ("pictify_link_ttl", 1.5, "must be a whole number"),
    ],
)
def test_bad_settings_raise_improperly_configured(name: str, value: object, says: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=says):
        PictifySettings.from_app(_app(**{name: value}), environ={})


def test_the_key_is_never_shown() -> None:
    settings = PictifySettings(api_key="pk_live_supersecret")
    assert "supersecret" not in repr(settings)
    with pytest.raises(ImproperlyConfigured) as caught:
        PictifySettings.from_app(_app(pictify_api_key=12345), environ={})
    assert "12345" not in str(caught.value)


def test_missing_key_says_how_to_set_it() -> None:
    with pytest.raises(ImproperlyConfigured, match="PICTIFY_API_KEY"):
        PictifySettings().require_api_key()


@pytest.mark.parametrize(("text", "value"), [("0", False), ("off", False), ("yes", True)])
def test_the_listener_can_be_switched_off_from_the_environment(text: str, value: bool) -> None:
    settings = PictifySettings.from_app(_app(), environ={"PICTIFY_REVOKE_LISTENER": text})
    assert settings.revoke_listener is value
    assert (
        PictifySettings.from_app(_app(pictify_revoke_listener=False), environ={}).revoke_listener
        is False
    )


@pytest.mark.parametrize(
    "name",
    [
        "pictify_timeout",
        "pictify_retry_backoff_base",
        "pictify_retry_backoff_max",
        "pictify_link_ttl",
        "pictify_outcome_ttl",
        "pictify_cancel_max_attempts",
        "pictify_cancel_deadline",
        "pictify_retry_after_max",
        "pictify_sweep_interval",
    ],
)
@pytest.mark.parametrize("value", [float("inf"), float("nan"), float("-inf")])
def test_non_finite_numbers_in_the_config_are_refused(name: str, value: float) -> None:
    with pytest.raises(ImproperlyConfigured, match="finite"):
        PictifySettings.from_app(_app(**{name: value}), environ={})


@pytest.mark.parametrize("text", ["inf", "Infinity", "nan", "-inf", "1e400"])
def test_non_finite_numbers_in_the_environment_are_refused(text: str) -> None:
    for env_name in ("PICTIFY_TIMEOUT", "PICTIFY_CANCEL_DEADLINE", "PICTIFY_SWEEP_INTERVAL"):
        with pytest.raises(ImproperlyConfigured, match="finite"):
            PictifySettings.from_app(_app(), environ={env_name: text})


def test_non_finite_numbers_are_refused_when_settings_are_built_directly() -> None:
    with pytest.raises(ImproperlyConfigured, match="finite"):
        PictifySettings(timeout=float("inf"))
    with pytest.raises(ImproperlyConfigured, match="finite"):
        PictifySettings(cancel_deadline=float("nan"))


def test_the_new_settings_are_read_from_the_config_then_the_environment() -> None:
    settings = PictifySettings.from_app(
        _app(pictify_cancel_deadline=120, pictify_sweep_interval=0),
        environ={
            "PICTIFY_CANCEL_DEADLINE": "999",
            "PICTIFY_RETRY_AFTER_MAX": "30.5",
            "PICTIFY_CANCEL_MAX_ATTEMPTS": "3",
            "PICTIFY_RETRY_BACKOFF_MAX": "15",
        },
    )
    assert settings.cancel_deadline == 120.0
    assert settings.sweep_interval == 0.0  # 0 switches the sweep off
    assert settings.retry_after_max == 30.5
    assert settings.cancel_max_attempts == 3
    assert settings.retry_backoff_max == 15.0
    unset = PictifySettings.from_app(_app(), environ={"PICTIFY_CANCEL_MAX_ATTEMPTS": ""})
    assert unset.cancel_max_attempts is None


@pytest.mark.parametrize("raw", ["pk_live_abc123\n", " pk_live_abc123\r\n", "\tpk_live_abc123 "])
def test_a_key_read_from_a_secret_file_loses_its_surrounding_whitespace(raw: str) -> None:
    from_conf = PictifySettings.from_app(_app(pictify_api_key=raw), environ={})
    from_env = PictifySettings.from_app(_app(), environ={"PICTIFY_API_KEY": raw})
    assert from_conf.api_key == from_env.api_key == "pk_live_abc123"
    assert PictifySettings(api_key=raw).api_key == "pk_live_abc123"
    assert PictifySettings.from_app(_app(pictify_api_key="\n"), environ={}).api_key is None


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("pk_live_abc\ndef123", "line feed"),
        ("pk_live_abc\x00def123", "control character"),
        ("pk_live_abc\x1bdef123", "control character"),
        ("pk_live_abc def123", "whitespace"),
        ("pk_live_abc\u00a0def123", "non-ASCII"),
    ],
)
def test_a_key_with_control_characters_is_refused_without_showing_it(key: str, says: str) -> None:
    for conf, environ in (({"pictify_api_key": key}, {}), ({}, {"PICTIFY_API_KEY": key})):
        with pytest.raises(ImproperlyConfigured, match=says) as caught:
            PictifySettings.from_app(_app(**conf), environ=environ)
        text = str(caught.value)
        assert "position 11" in text and "pictify_api_key" in text
        assert "abc" not in text and "def123" not in text


def test_a_key_with_a_newline_in_the_celery_config_works_stripped() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = _app(
            task_always_eager=True,
            task_eager_propagates=True,
            pictify_api_key=emulator.api_key + "\n",
            pictify_base_url=emulator.base_url,
            pictify_state_url="memory://",
        )
        pictify_tasks.install(app)
        try:
            batch_id = emulator.create_batch()
            result = app.tasks["pictify.cancel_batch"].delay(batch_id).get()
            assert result["outcome"] == "cancelled"
            [request] = emulator.cancel_requests(batch_id)
            assert request.headers["Authorization"] == f"Bearer {emulator.api_key}"
        finally:
            pictify_tasks.uninstall(app)
            app.close()


# -- the rate limit and the cluster ------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "count", "per"),
    [
        ("300/m", 300, 60.0),
        (" 5 / s ", 5, 1.0),
        ("1000/h", 1000, 3600.0),
        ("7", 7, 1.0),
        (20, 20, 1.0),
    ],
)
def test_the_rate_limit_is_written_as_celery_writes_rate_limit(
    written: object, count: int, per: float
) -> None:
    settings = PictifySettings.from_app(_app(pictify_rate_limit=written), environ={})
    assert settings.rate_limit == Rate(count, per)


def test_the_rate_limit_defaults_to_none_and_is_read_from_the_environment() -> None:
    assert PictifySettings.from_app(_app(), environ={}).rate_limit is None
    settings = PictifySettings.from_app(_app(), environ={"PICTIFY_RATE_LIMIT": "60/m"})
    assert settings.rate_limit == Rate(60, 60.0)
    assert str(settings.rate_limit) == "60/m"


@pytest.mark.parametrize("written", ["0/m", "fast", "5/d", "1.5/s", "-3/s", True, 2.5])
def test_a_bad_rate_limit_is_refused_when_the_settings_are_read(written: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="pictify_rate_limit"):
        PictifySettings.from_app(_app(pictify_rate_limit=written), environ={})


def test_the_cluster_switch_needs_a_node_url_of_database_0() -> None:
    environ = {"PICTIFY_STATE_CLUSTER": "1", "PICTIFY_STATE_URL": "redis://10.0.0.5:7000"}
    assert PictifySettings.from_app(_app(), environ=environ).state_cluster is True
    assert PictifySettings.from_app(_app(), environ={}).state_cluster is False
    for url, says in [("redis://10.0.0.5:7000/3", "only database 0"), ("memory://", "redis://")]:
        with pytest.raises(ImproperlyConfigured, match=says):
            PictifySettings.from_app(_app(), environ={**environ, "PICTIFY_STATE_URL": url})
