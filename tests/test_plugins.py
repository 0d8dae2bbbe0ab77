"""The plugin platform: loading, disabling, instance plugins, containment."""
import inspect
import textwrap

import pluggy
import pytest

from topup import create_app, hookspecs, orders
from topup.models import Order, Payment
from topup.plugins import DEFAULT_PLUGINS, get_plugin_manager

from tests.conftest import buy, form_tokens, plugin_problems

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)]

CURRY_PLUGIN = textwrap.dedent('''
    from topup import hookimpl
    from topup.payments import PaymentAction, PaymentProvider

    class CurryPay(PaymentProvider):
        id = "currypay"
        name = "CurryPay"
        countries = frozenset({"IN"})
        currencies = frozenset({"INR"})

        def start(self, order, return_url):
            if self.settings.get("broken"):
                raise RuntimeError("CurryPay is down")
            return PaymentAction(kind="instructions", provider_ref="cp-" + order.public_id,
                                 code="CP-" + order.public_id[:6],
                                 instructions=("Open CurryPay and enter the code.",))

    @hookimpl
    def register_payment_providers():
        return [CurryPay]
''')


def test_every_hook_has_a_docstring():
    for name in HOOKS:
        assert getattr(hookspecs, name).__doc__, f"hook {name} is undocumented"


def test_built_ins_register_under_their_names_and_can_be_disabled():
    pm = get_plugin_manager()
    assert set(DEFAULT_PLUGINS) <= {name for name, _ in pm.list_name_plugin()}
    pm = get_plugin_manager(disabled=["sandbox_payment"])
    assert pm.get_plugin("sandbox_payment") is None and pm.is_blocked("sandbox_payment")
    assert pm.get_plugin("sandbox_delivery") is not None


def test_misspelt_hook_fails_loudly(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "typo.py").write_text(
        "from topup import hookimpl\n\n@hookimpl\ndef register_payment_provider():\n    return []\n")
    with pytest.raises(pluggy.PluginValidationError):
        get_plugin_manager(instance_path=str(tmp_path))


@pytest.fixture
def curry_app(config, tmp_path, monkeypatch):
    """An app with a one-file plugin dropped into instance/plugins/."""
    from topup import demo, schema

    instance = tmp_path / "instance"
    (instance / "plugins").mkdir(parents=True)
    (instance / "plugins" / "currypay.py").write_text(CURRY_PLUGIN)
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(instance))
    app = create_app(config)
    with app.app_context():
        schema.drop_all(app.extensions["topup"].pm)
        schema.create_all(app.extensions["topup"].pm)
        demo.seed()
    return app


def test_instance_plugin_offers_its_method_only_where_it_serves(curry_app):
    client = curry_app.test_client()
    india = client.get("/tiktok-coins?country=IN").get_data(as_text=True)
    assert 'value="currypay"' in india
    brazil = client.get("/tiktok-coins?country=BR").get_data(as_text=True)
    assert 'value="currypay"' not in brazil and 'value="sandbox"' in brazil


def test_instance_plugin_takes_an_order_and_shows_its_instructions(curry_app):
    client = curry_app.test_client()
    response = buy(client, country="IN", method="currypay")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Open CurryPay and enter the code." in page and "CP-" in page


def test_a_provider_that_fails_to_start_fails_the_order_and_asks_for_another_method(
        curry_app):
    curry_app.extensions["topup"].providers["currypay"].settings["broken"] = True
    client = curry_app.test_client()
    response = buy(client, country="IN", method="currypay")
    assert response.status_code == 422
    assert "CurryPay is not working right now" in response.get_data(as_text=True)
    with curry_app.app_context():
        assert [o.status for o in Order.select()] == [orders.FAILED]
        [payment] = Payment.select()
        assert payment.status == "failed" and "CurryPay is down" in payment.error
    assert "CurryPay is down" in plugin_problems()["currypay"]


def test_a_provider_that_raises_while_listing_is_hidden_and_others_remain(app, client):
    registry = app.extensions["topup"]

    def explode(country, currency):
        raise RuntimeError("listing broke")

    registry.providers["sandbox"].serves = explode
    page = client.get("/tiktok-coins?country=US").get_data(as_text=True)
    assert 'value="sandbox"' not in page
    assert "No payment method is available" in page
    assert "listing broke" in plugin_problems()["sandbox"]


def test_secrets_come_from_the_environment(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SANDBOX_SECRET", "from-env")
    config["PLUGINS"] = {"sandbox_payment": {"webhook_secret": {"$env": "SANDBOX_SECRET"}}}
    app = create_app(config)
    assert app.extensions["topup"].providers["sandbox"].secret == "from-env"


def test_secrets_inside_lists_and_nested_settings_come_from_the_environment(monkeypatch):
    from topup.config import resolve_secrets

    monkeypatch.setenv("KEY_NEW", "new")
    monkeypatch.setenv("KEY_OLD", "old")
    settings = {"keys": [{"$env": "KEY_NEW"}, {"$env": "KEY_OLD"}],
                "fee_fixed": {"BRL": 50}, "nested": {"token": {"$env": "KEY_NEW"}}}
    assert resolve_secrets(settings) == {"keys": ["new", "old"], "fee_fixed": {"BRL": 50},
                                         "nested": {"token": "new"}}
    with pytest.raises(KeyError, match="nested.token.*NO_SUCH_VARIABLE"):
        resolve_secrets({"nested": {"token": {"$env": "NO_SUCH_VARIABLE"}}})


def test_lookup_backend_failure_is_a_clear_message_not_an_error(app, client):
    registry = app.extensions["topup"]

    def explode(product, account_id):
        raise TimeoutError("reseller timed out")

    registry.backends["sandbox"].lookup_account = explode
    response = client.get("/tiktok-coins/account?account=maria", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "couldn&#39;t check this account right now" in response.get_data(as_text=True)
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    assert buy(client, tokens=tokens).status_code == 422


def test_a_provider_the_operator_has_not_set_up_is_quietly_left_out(config, tmp_path,
                                                                     monkeypatch):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "needs_key.py").write_text(textwrap.dedent('''
        from topup import hookimpl
        from topup.payments import NotConfigured, PaymentProvider

        class NeedsKey(PaymentProvider):
            id, name = "needskey", "Needs a key"

            def __init__(self, settings):
                if "key" not in settings:
                    raise NotConfigured
                super().__init__(settings)

        @hookimpl
        def register_payment_providers():
            return [NeedsKey]
    '''))
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    registry = create_app(config).extensions["topup"]
    assert "needskey" not in registry.providers
    assert "needskey" in registry.not_configured and "needs_key" not in registry.errors
    config["PLUGINS"]["needs_key"] = {"key": "k"}
    assert "needskey" in create_app(config).extensions["topup"].providers
