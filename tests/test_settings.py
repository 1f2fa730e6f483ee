from __future__ import annotations

import pytest
from celery import Celery

from pictify_tasks import ImproperlyConfigured, PictifySettings


def _app(**conf: object) -> Celery:
    app = Celery("settings-test", set_as_current=False)
    app.conf.update(conf)
    return app


def test_defaults() -> None:
    settings = PictifySettings.from_app(_app(broker_url="amqp://guest@localhost//"), environ={})
    assert settings.api_key is None
    assert settings.base_url == "https://api.pictify.io"
    assert settings.state_url is None
    assert settings.cancel_max_attempts == 5
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
        ("pictify_state_url", "amqp://x", "must be a URL"),
        ("pictify_revoke_scope", "everything", "must be one of"),
        ("pictify_retry_backoff_max", -1, "greater than 0"),
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
