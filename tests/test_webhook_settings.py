"""The webhook settings: a secret list, a URL, a safety interval; secrets never shown."""

from __future__ import annotations

import pytest
from celery import Celery

from pictify_tasks import ImproperlyConfigured, PictifySettings

SECRET = "whsec_0123456789abcdef"
OLD = "whsec_fedcba9876543210"


def read(environ: dict[str, str], **conf: object) -> PictifySettings:
    app = Celery("webhook-settings", set_as_current=False)
    app.conf.update(conf)
    return PictifySettings.from_app(app, environ=environ)


def test_webhooks_are_off_by_default() -> None:
    settings = read({})
    assert settings.webhook_url is None
    assert settings.webhook_secret == ()
    assert settings.webhook_poll_interval == 300.0


def test_the_environment_gives_several_secrets_a_url_and_an_interval() -> None:
    settings = read(
        {
            "PICTIFY_WEBHOOK_SECRET": f" {SECRET} , {OLD}\n",
            "PICTIFY_WEBHOOK_URL": "https://example.com/pictify/webhook",
            "PICTIFY_WEBHOOK_POLL_INTERVAL": "600",
        }
    )
    assert settings.webhook_secret == (SECRET, OLD)
    assert settings.webhook_url == "https://example.com/pictify/webhook"
    assert settings.webhook_poll_interval == 600.0


def test_the_app_config_takes_a_list_or_one_secret() -> None:
    assert read({}, pictify_webhook_secret=[SECRET, OLD]).webhook_secret == (SECRET, OLD)
    assert read({}, pictify_webhook_secret=SECRET).webhook_secret == (SECRET,)


@pytest.mark.parametrize(
    "value",
    [
        "short",  # guessable from one captured delivery
        f"{SECRET},",  # an empty second secret
        f"{SECRET[:8]}\x00{SECRET[8:]}",
        f"{SECRET[:8]} {SECRET[8:]}",
        ["é" * 20],
    ],
)
def test_a_bad_secret_is_refused_without_being_shown(value: object) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        read({}, pictify_webhook_secret=value)
    text = str(caught.value)
    assert "pictify_webhook_secret" in text
    for secret in value if isinstance(value, list) else [value]:
        assert str(secret).strip() not in text
        assert SECRET[:8] not in text


def test_a_secret_is_never_in_the_repr_or_the_description() -> None:
    settings = read({"PICTIFY_WEBHOOK_SECRET": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in settings.describe()


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"PICTIFY_WEBHOOK_URL": "ftp://example.com/hook"}, "pictify_webhook_url"),
        ({"PICTIFY_WEBHOOK_POLL_INTERVAL": "0"}, "pictify_webhook_poll_interval"),
        ({"PICTIFY_WEBHOOK_POLL_INTERVAL": "inf"}, "PICTIFY_WEBHOOK_POLL_INTERVAL"),
    ],
)
def test_a_bad_url_or_interval_is_refused(environ: dict[str, str], name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=name):
        read(environ)
