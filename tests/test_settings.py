"""The typed settings follow the app's config: built once, built again after any change."""

from __future__ import annotations

import pytest

from crm_app.config import Settings, settings_of


def test_settings_are_built_once_until_the_config_changes(app) -> None:
    first = settings_of(app)
    assert settings_of(app) is first  # no rebuild per call (three per request)


@pytest.mark.parametrize(
    "change",
    [
        lambda config: config.__setitem__("DELIVERY_CONCURRENCY", 7),
        lambda config: config.update(DELIVERY_CONCURRENCY=7),
        lambda config: config.update({"DELIVERY_CONCURRENCY": 7}),
        lambda config: config.__ior__({"DELIVERY_CONCURRENCY": 7}),
        lambda config: config.from_mapping(DELIVERY_CONCURRENCY=7),
    ],
)
def test_every_way_of_changing_the_config_is_seen(app, change) -> None:
    settings_of(app)
    change(app.config)
    assert settings_of(app).delivery_concurrency == 7


def test_a_monkeypatched_setting_is_seen_and_undone(app, monkeypatch) -> None:
    before = settings_of(app).delivery_concurrency
    with monkeypatch.context() as patch:
        patch.setitem(app.config, "DELIVERY_CONCURRENCY", before + 1)
        assert settings_of(app).delivery_concurrency == before + 1
    assert settings_of(app).delivery_concurrency == before
    app.config.pop("DELIVERY_CONCURRENCY")
    assert settings_of(app).delivery_concurrency == Settings().delivery_concurrency
    app.config["DELIVERY_CONCURRENCY"] = before
