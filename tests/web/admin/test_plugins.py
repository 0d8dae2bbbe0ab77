"""The plugins page tells what `topup plugins` tells, and never a setting."""
from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET

SECRET_KEY = "sk_test_" + "s" * 30


@pytest.fixture
def config(config):
    config["DISABLED_PLUGINS"] = ["digiflazz"]
    config["PLUGINS"] = {**config["PLUGINS"],
                         "stripe_checkout": {"secret_key": SECRET_KEY},
                         "manual": {"notify_url": "https://ops.example/hook"}}  # no secret: fails
    return config


def test_the_plugins_page(app, runner, operator_client):
    page = operator_client.get("/admin/plugins").get_data(as_text=True)
    registry = app.extensions["topup"]
    for name, plugin in registry.pm.list_name_plugin():
        if plugin is not None:
            assert f"<td>{name}</td>" in page
    assert "sandbox_payment</td><td>–</td><td>register_blueprints, register_models, " \
           "register_payment_providers" in page
    assert "<dt>Disabled</dt><dd>digiflazz</dd>" in page
    assert "Sandbox (test payment) <span class=\"muted\">(sandbox)</span>" in page
    assert "<strong>manual</strong>: ValueError: manual: notify_url needs notify_secret" in page
    not_configured = page[page.index("<dt>Not configured</dt>"):]
    assert "pix" in not_configured and "vouchers" in not_configured
    for secret in (WEBHOOK_SECRET, SECRET_KEY, "https://ops.example/hook"):
        assert secret not in page
