"""The plugin platform third parties build on: every hook documented and
tested, the hook API version, containment of a broken plugin on every path,
the contract kit (topup.testing) catching broken plugins, and the example
package (plugins/examples/topup-spei) installed and selling end to end."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pluggy
import pytest

from topup import ROOT, create_app, demo, hookimpl, hookspecs, orders, schema, signing, worker
from topup.cli import main
from topup.models import Delivery, Order, Package, Product
from topup.plugins import PluginIncompatible

from tests.conftest import buy, place_order, sandbox_event, signed_headers
from tests.conftest import pay, plugin_problems

HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if hasattr(fn, "topup_spec"))
DOCS = ROOT / "docs" / "plugins.md"
EXAMPLE = ROOT / "plugins" / "examples" / "topup-spei"


def make_app(config, tmp_path, monkeypatch, **plugins: str):
    """An app with one-file plugins ({name: source}) in instance/plugins/, demo catalog seeded."""
    folder = tmp_path / "instance" / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in plugins.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(config)
    with app.app_context():
        schema.drop_all(app.extensions["topup"].pm)
        schema.create_all(app.extensions["topup"].pm)
        demo.seed()
    return app


def status(order) -> str:
    return Order.get_by_id(order.id).status


# --- every hook documented and tested --------------------------------------------------


def test_there_are_hooks_to_check():
    assert "register_payment_providers" in HOOKS and "order_status_changed" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    headings = re.findall(r"^#{2,4} +(.+)$", DOCS.read_text(), re.MULTILINE)
    assert any(re.search(rf"\b{hook}\b", heading) for heading in headings), (
        f"docs/plugins.md has no heading for the hook {hook}")


@functools.cache
def hook_test_names(path: Path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_")}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    names = set().union(*(hook_test_names(path) for path in (ROOT / "tests").rglob("test_*.py")))
    assert any(name.startswith(f"test_hook_{hook}") for name in names), (
        f"no test under tests/ is named test_hook_{hook}...")


def test_the_hook_api_has_a_version():
    assert type(hookspecs.HOOK_API_VERSION) is int and hookspecs.HOOK_API_VERSION >= 1


# --- each hook, through a plugin that implements them all --------------------------------

EVERYTHING = '''
    from pathlib import Path

    import click
    from flask import Blueprint, render_template
    from flask.cli import with_appcontext
    from peewee import CharField

    from topup import hookimpl
    from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
    from topup.models import BaseModel
    from topup.payments import PaymentAction, PaymentProvider

    HERE = Path(__file__).parent / "everything"
    CALLS = []  # what housekeeping and order_status_changed saw

    class Note(BaseModel):
        text = CharField()

        class Meta:
            table_name = "everything_note"

    class EveryPay(PaymentProvider):
        id, name = "everypay", "EveryPay"
        countries = frozenset({"PH"})

        def start(self, order, return_url):
            return PaymentAction(kind="instructions", provider_ref="ep-" + order.public_id[:10],
                                 instructions=("Pay at any EveryPay counter.",))

    class EveryDelivery(DeliveryBackend):
        id, name = "every", "Every delivery"

        def lookup_account(self, product, account_id):
            return AccountInfo(account_id, found=True, nickname="Every " + account_id)

        def deliver(self, order):
            return DeliveryResult("delivered", reference="EV-" + order.public_id[:6])

    bp = Blueprint("everything", __name__, url_prefix="/everything",
                   template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))

    @bp.get("/")
    def page():
        return render_template("everything/page.html", notes=Note.select().count())

    @click.command("everything-hello")
    @with_appcontext
    def hello():
        click.echo(f"hello from everything, {Note.select().count()} notes")

    @hookimpl
    def register_payment_providers():
        return [EveryPay]

    @hookimpl
    def register_delivery_backends():
        return [EveryDelivery]

    @hookimpl
    def register_blueprints():
        return [bp]

    @hookimpl
    def register_models():
        return [Note]

    @hookimpl
    def register_commands(cli):
        cli.add_command(hello)

    @hookimpl
    def housekeeping():
        CALLS.append("housekeeping")

    @hookimpl
    def order_status_changed(order, old, new):
        CALLS.append((order.public_id, old, new))
'''


@pytest.fixture
def everything(config, tmp_path, monkeypatch):
    files = tmp_path / "instance" / "plugins" / "everything"
    (files / "templates" / "everything").mkdir(parents=True)
    (files / "static").mkdir()
    (files / "templates" / "everything" / "page.html").write_text(
        '{% extends "base.html" %}{% block main %}<p id="everything">'
        '{{ notes }} notes, drawn by the plugin</p>{% endblock %}')
    (files / "static" / "everything.css").write_text("#everything { color: teal }\n")
    app = make_app(config, tmp_path, monkeypatch, everything=EVERYTHING)
    app.everything = app.extensions["topup"].pm.get_plugin("everything")
    return app


def test_hook_register_payment_providers_offers_the_method_where_it_serves(everything):
    client = everything.test_client()
    assert 'value="everypay"' in client.get("/tiktok-coins?country=PH").get_data(as_text=True)
    assert 'value="everypay"' not in client.get("/tiktok-coins?country=US").get_data(as_text=True)
    order = place_order(client, country="PH", method="everypay")
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "Pay at any EveryPay counter." in page


def test_hook_register_delivery_backends_looks_up_and_delivers(everything):
    client = everything.test_client()
    with everything.app_context():
        Product.update(delivery_backend="every").execute()
    answer = client.get("/tiktok-coins/account?account=maria", headers={"HX-Request": "true"})
    assert "Every maria" in answer.get_data(as_text=True)
    order = place_order(client, account="@maria")
    pay(everything, order)
    assert worker.deliver_once(everything)
    assert status(order) == orders.DELIVERED
    assert Delivery.get(Delivery.order == order.id).reference == "EV-" + order.public_id[:6]


def test_hook_register_blueprints_serves_pages_templates_and_static_files_of_the_plugin(
        everything):
    client = everything.test_client()
    page = client.get("/everything/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<p id="everything">0 notes, drawn by the plugin</p>' in html
    assert f'<title>{everything.config["SHOP_NAME"]}</title>' in html  # core's base.html
    with client.get("/everything/static/everything.css") as static:
        assert static.get_data() == b"#everything { color: teal }\n"


def test_hook_register_models_gets_its_table_created(everything):
    note = everything.everything.Note
    with everything.app_context():
        assert note.table_exists()
        note.create(text="hello")
        assert note.select().count() == 1


def test_hook_register_commands_adds_a_topup_command(everything):
    result = everything.test_cli_runner().invoke(args=["everything-hello"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello from everything, 0 notes\n"


def test_hook_housekeeping_runs_in_the_sweep_even_after_another_plugin_fails(everything):
    everything.extensions["topup"].pm.register(Failing(), "failing")
    worker.sweep(everything)
    assert everything.everything.CALLS == ["housekeeping"]
    assert "housekeeping broke" in plugin_problems()["failing"]


class Failing:
    """A plugin object whose periodic work and listener always raise."""

    @hookimpl(tryfirst=True)
    def housekeeping(self):
        raise RuntimeError("housekeeping broke")

    @hookimpl(tryfirst=True)
    def order_status_changed(self, order, old, new):
        raise RuntimeError("listener broke")


def test_hook_order_status_changed_hears_each_committed_change(everything):
    client = everything.test_client()
    everything.extensions["topup"].pm.register(Failing(), "failing")
    order = place_order(client)
    pay(everything, order)
    assert worker.deliver_once(everything)
    assert status(order) == orders.DELIVERED  # a raising listener undid nothing
    assert [call for call in everything.everything.CALLS if call[0] == order.public_id] == [
        (order.public_id, "awaiting_payment", "paid"), (order.public_id, "paid", "delivering"),
        (order.public_id, "delivering", "delivered")]
    assert "listener broke" in plugin_problems()["failing"]


# --- compatibility ---------------------------------------------------------------------


def versioned(api, body: str = "") -> str:
    return f"from topup import hookimpl\n\nTOPUP_HOOK_API = {api!r}\n" + textwrap.dedent(body)


def test_a_plugin_for_a_newer_hook_api_refuses_to_start(config, tmp_path, monkeypatch):
    with pytest.raises(PluginIncompatible) as refused:
        make_app(config, tmp_path, monkeypatch, future=versioned(hookspecs.HOOK_API_VERSION + 1))
    message = str(refused.value)
    newer = hookspecs.HOOK_API_VERSION + 1
    assert message.startswith(f"plugin future needs topup hook API {newer}")
    assert f"this topup has {hookspecs.HOOK_API_VERSION}" in message
    assert "DISABLED_PLUGINS" in message


def test_a_plugin_for_our_hook_api_or_an_older_one_loads(config, tmp_path, monkeypatch):
    app = make_app(config, tmp_path, monkeypatch, current=versioned(hookspecs.HOOK_API_VERSION),
                   older=versioned(0))
    loaded = {name for name, _ in app.extensions["topup"].pm.list_name_plugin()}
    assert {"current", "older"} <= loaded


def test_a_hook_api_that_is_not_a_number_is_refused(config, tmp_path, monkeypatch):
    with pytest.raises(PluginIncompatible, match="TOPUP_HOOK_API must be an int"):
        make_app(config, tmp_path, monkeypatch, odd=versioned("1"))


def test_a_newer_plugin_using_a_hook_we_lack_says_it_is_too_new(config, tmp_path, monkeypatch):
    source = versioned(hookspecs.HOOK_API_VERSION + 1, '''
        @hookimpl
        def register_payout_providers():
            return []
    ''')
    with pytest.raises(PluginIncompatible, match="plugin future needs topup hook API"):
        make_app(config, tmp_path, monkeypatch, future=source)


def test_a_newer_plugin_using_a_hook_argument_we_lack_says_it_is_too_new(
        config, tmp_path, monkeypatch):
    source = versioned(hookspecs.HOOK_API_VERSION + 1, '''
        @hookimpl
        def order_status_changed(order, old, new, actor):
            pass
    ''')
    with pytest.raises(PluginIncompatible, match="plugin future needs topup hook API"):
        make_app(config, tmp_path, monkeypatch, future=source)


def test_an_instance_plugin_with_a_hook_we_do_not_have_fails_at_start(config, tmp_path,
                                                                       monkeypatch):
    source = "from topup import hookimpl\n\n@hookimpl\ndef on_refund():\n    pass\n"
    with pytest.raises(pluggy.PluginValidationError, match="on_refund"):
        make_app(config, tmp_path, monkeypatch, typo=source)


def install_distribution(tmp_path, monkeypatch, source: str, *, name="topup-acme",
                         version="2.3.4", entry_point="acme") -> str:
    """A package installed the way pip installs one: a module and its
    .dist-info (METADATA, entry_points.txt) on sys.path. Returns the module name."""
    site = tmp_path / "site-packages"
    module = f"topup_acme_{uuid.uuid4().hex[:8]}"
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[topup]\n{entry_point} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    return module


ACME = '''
    from topup import hookimpl
    from topup.payments import PaymentAction, PaymentProvider

    TOPUP_HOOK_API = 1

    class Acme(PaymentProvider):
        id, name = "acme", "Acme Pay"

        def start(self, order, return_url):
            return PaymentAction(kind="instructions", provider_ref="acme-1")

    @hookimpl
    def register_payment_providers():
        return [Acme]
'''


def test_an_installed_package_loads_and_topup_plugins_shows_its_version_and_hooks(
        config, tmp_path, monkeypatch):
    install_distribution(tmp_path, monkeypatch, ACME)
    app = make_app(config, tmp_path, monkeypatch)
    assert "acme" in app.extensions["topup"].providers
    result = app.test_cli_runner().invoke(main, ["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(result.output)["plugins"]}
    assert rows["acme"] == {"name": "acme", "version": "2.3.4",
                            "hooks": ["register_payment_providers"]}
    text = app.test_cli_runner().invoke(main, ["plugins"]).output.splitlines()
    assert "acme 2.3.4: register_payment_providers" in text


def test_an_installed_package_with_a_hook_we_do_not_have_fails_at_start(
        config, tmp_path, monkeypatch):
    install_distribution(tmp_path, monkeypatch, ACME + '''
    @hookimpl
    def register_payment_provider():  # misspelt
        return []
''')
    with pytest.raises(pluggy.PluginValidationError, match="register_payment_provider"):
        make_app(config, tmp_path, monkeypatch)


def test_an_installed_package_for_a_newer_hook_api_refuses_to_start(config, tmp_path,
                                                                     monkeypatch):
    install_distribution(tmp_path, monkeypatch, ACME.replace("TOPUP_HOOK_API = 1",
                                                             "TOPUP_HOOK_API = 99"))
    with pytest.raises(PluginIncompatible, match="plugin acme needs topup hook API 99"):
        make_app(config, tmp_path, monkeypatch)


def test_an_installed_package_can_be_disabled_by_its_entry_point_name(config, tmp_path,
                                                                        monkeypatch):
    install_distribution(tmp_path, monkeypatch, ACME.replace("TOPUP_HOOK_API = 1",
                                                             "TOPUP_HOOK_API = 99"))
    config["DISABLED_PLUGINS"] = ["acme"]
    app = make_app(config, tmp_path, monkeypatch)  # the incompatible plugin is never loaded
    assert "acme" not in app.extensions["topup"].providers


# --- containment: a broken plugin never breaks checkout for the others ---------------------

BROKEN = '''
    import os

    from topup import hookimpl
    from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
    from topup.payments import PaymentAction, PaymentProvider

    FAIL = set(os.environ.get("BROKEN_FAIL", "").split(","))


    def trip(where):
        if where in FAIL:
            raise RuntimeError(f"broken {where}")


    class BrokenPay(PaymentProvider):
        id, name = "brokenpay", "BrokenPay"

        def __init__(self, settings):
            trip("init")
            super().__init__(settings)

        def serves(self, country, currency):
            trip("serves")
            return True

        def accepts(self, amount):
            trip("accepts")
            return True

        def start(self, order, return_url):
            trip("start")
            return PaymentAction(kind="instructions", provider_ref="bp-" + order.public_id[:12])

        def parse_webhook(self, request):
            trip("webhook")
            return []


    class BrokenDelivery(DeliveryBackend):
        id, name = "broken", "Broken delivery"

        def lookup_account(self, product, account_id):
            trip("lookup")
            return AccountInfo(account_id, found=True)

        def deliver(self, order):
            trip("deliver")
            return DeliveryResult("delivered", reference="BR-" + order.public_id[:6])

        def in_stock(self, package):
            trip("in_stock")
            return True

        def buyer_code(self, order):
            trip("buyer_code")
            return "CODE-1"


    @hookimpl
    def register_payment_providers():
        trip("register")
        return [BrokenPay]


    @hookimpl
    def register_delivery_backends():
        return [BrokenDelivery]
'''


@pytest.fixture
def broken(config, tmp_path, monkeypatch):
    """make(failing_at...) -> an app whose "broken" plugin raises at those points."""
    def make(*where):
        monkeypatch.setenv("BROKEN_FAIL", ",".join(where))
        return make_app(config, tmp_path, monkeypatch, broken=BROKEN)
    return make


def plugins_report(app) -> str:
    return app.test_cli_runner().invoke(main, ["plugins"]).output


def checkout_still_works(app) -> Order:
    """A buyer pays with the sandbox and gets their coins."""
    client = app.test_client()
    order = place_order(client, method="sandbox")
    body = sandbox_event(order)
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert worker.deliver_once(app)
    assert status(order) == orders.DELIVERED
    return order


def test_without_failures_the_broken_plugin_works(broken):
    app = broken()
    client = app.test_client()
    assert 'value="brokenpay"' in client.get("/tiktok-coins?country=US").get_data(as_text=True)
    assert place_order(client, method="brokenpay").status == orders.AWAITING_PAYMENT
    assert app.extensions["topup"].errors == {} and plugin_problems() == {}


@pytest.mark.parametrize("where", ["register", "init"])
def test_a_plugin_failing_to_build_is_left_out(broken, where):
    app = broken(where)
    registry = app.extensions["topup"]
    assert "brokenpay" not in registry.providers and "broken" in registry.backends
    assert f"broken {where}" in registry.errors["broken"]
    assert f"failed to load broken: RuntimeError: broken {where}" in plugins_report(app)
    checkout_still_works(app)


def test_a_provider_failing_to_list_is_hidden_and_checkout_goes_on(broken):
    app = broken("serves")
    page = app.test_client().get("/tiktok-coins?country=US").get_data(as_text=True)
    assert 'value="brokenpay"' not in page and 'value="sandbox"' in page
    assert "problem in brokenpay: RuntimeError: broken serves (1x, last " in plugins_report(app)
    checkout_still_works(app)


def test_a_provider_failing_to_check_the_amount_is_refused_at_buy_and_checkout_goes_on(broken):
    """accepts() is asked only once the package is chosen (at Buy)."""
    app = broken("accepts")
    response = buy(app.test_client(), method="brokenpay")
    assert response.status_code == 422
    assert "BrokenPay can&#39;t be used for this amount" in response.get_data(as_text=True)
    assert "problem in brokenpay: RuntimeError: broken accepts (1x, last " in plugins_report(app)
    checkout_still_works(app)


def test_a_provider_failing_to_start_fails_only_its_order(broken):
    app = broken("start")
    response = buy(app.test_client(), method="brokenpay")
    assert response.status_code == 422
    assert "BrokenPay is not working right now" in response.get_data(as_text=True)
    assert "broken start" in plugin_problems()["brokenpay"]
    checkout_still_works(app)


def test_a_provider_failing_on_its_webhook_asks_for_a_retry_and_others_are_paid(broken):
    app = broken("webhook")
    client = app.test_client()
    mine = place_order(client, method="brokenpay")
    response = client.post("/webhooks/brokenpay", data=b"{}",
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert status(mine) == orders.AWAITING_PAYMENT
    assert "broken webhook" in plugin_problems()["brokenpay"]
    checkout_still_works(app)


def test_a_backend_failing_to_deliver_is_retried_and_other_orders_are_delivered(broken):
    app = broken("deliver")
    client = app.test_client()
    with app.app_context():
        Product.update(delivery_backend="broken").execute()
    stuck = place_order(client, method="sandbox")
    pay(app, stuck)
    with app.app_context():
        Product.update(delivery_backend="sandbox").execute()
    fine = place_order(client, method="sandbox")
    pay(app, fine)
    for _ in range(3):
        worker.deliver_once(app)
    assert status(fine) == orders.DELIVERED
    assert status(stuck) == orders.DELIVERING
    delivery = Delivery.get(Delivery.order == stuck.id)
    assert delivery.status == "pending" and "RuntimeError: broken deliver" in delivery.last_error
    assert "broken deliver" in plugin_problems()["broken"]


def test_a_backend_failing_its_stock_check_hides_its_packages_only(broken):
    app = broken("in_stock")
    with app.app_context():
        Product.update(delivery_backend="broken").execute()
    page = app.test_client().get("/tiktok-coins?country=US").get_data(as_text=True)
    assert f'value="{Package.get(Package.quantity == 70).id}"' not in page
    assert "broken in_stock" in plugin_problems()["broken"]


def test_a_backend_failing_its_lookup_tells_the_buyer_plainly(broken):
    app = broken("lookup")
    with app.app_context():
        Product.update(delivery_backend="broken").execute()
    answer = app.test_client().get("/tiktok-coins/account?account=maria",
                                   headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert "couldn&#39;t check this account right now" in answer.get_data(as_text=True)
    assert "broken lookup" in plugin_problems()["broken"]


def test_a_backend_failing_to_show_the_buyers_code_still_shows_the_order(broken):
    app = broken("buyer_code")
    client = app.test_client()
    with app.app_context():
        Product.update(delivery_backend="broken").execute()
    order = place_order(client, method="sandbox")
    pay(app, order)
    assert worker.deliver_once(app)
    page = client.get(f"/orders/{order.public_id}")
    assert page.status_code == 200 and "CODE-1" not in page.get_data(as_text=True)
    assert "broken buyer_code" in plugin_problems()["broken"]


# --- the contract kit catches what it promises to catch ------------------------------------

GOODPAY = '''
    """A correct provider the kit's self-test varies one fault at a time."""
    import hashlib
    import json

    from topup import hookimpl, signing
    from topup.money import Money
    from topup.payments import PaymentAction, PaymentEvent, PaymentProvider, WebhookRejected
    from topup.testing import PaymentProviderContract

    SECRET = "goodpay-secret-" + "g" * 20
    HEADER = "GoodPay-Signature"


    class GoodPay(PaymentProvider):
        id, name = "goodpay", "GoodPay"
        countries = frozenset({"PH"})

        def start(self, order, return_url):
            ref = "gp-" + hashlib.sha256(order.public_id.encode()).hexdigest()[:20]
            return PaymentAction(kind="instructions", provider_ref=ref)

        def verify(self, request):
            try:
                signing.verify(SECRET, request.get_data(), request.headers.get(HEADER),
                               header_name=HEADER)
            except signing.SignatureError as error:
                raise WebhookRejected(str(error)) from None

        def parse_webhook(self, request):
            self.verify(request)
            note = json.loads(request.get_data())
            return [PaymentEvent(event_id=note["id"], kind="succeeded", payment_ref=note["ref"],
                                 amount=self.money(note))]

        def money(self, note):
            return Money(note["amount"], note["currency"])


    class GoodPayContract(PaymentProviderContract):
        country = "PH"
        signature_header = HEADER

        def valid_webhook(self, payment):
            body = json.dumps({"id": "n-" + payment.provider_ref, "ref": payment.provider_ref,
                               "amount": payment.amount, "currency": payment.currency}).encode()
            return body, {"Content-Type": "application/json", HEADER: signing.sign(SECRET, body)}
'''

KIT_SELF_TEST = {
    "test_good": '''
        import sys
        from topup import hookimpl
        from goodpay import GoodPay, GoodPayContract

        @hookimpl
        def register_payment_providers():
            return [GoodPay]

        class TestGood(GoodPayContract):
            provider_class = GoodPay
            plugin = sys.modules[__name__]  # GoodPay is defined elsewhere (goodpay.py)
    ''',
    "test_trusting": '''
        from topup import hookimpl
        from goodpay import GoodPay, GoodPayContract

        class Trusting(GoodPay):
            def verify(self, request):
                pass  # never checks the signature

        @hookimpl
        def register_payment_providers():
            return [Trusting]

        class TestTrusting(GoodPayContract):
            provider_class = Trusting
    ''',
    "test_major_units": '''
        from decimal import Decimal
        from topup import hookimpl
        from topup.money import Money
        from goodpay import GoodPay, GoodPayContract

        class MajorUnits(GoodPay):
            def money(self, note):  # pesos where centavos are due
                return Money(int(Decimal(note["amount"]) / 100), note["currency"])

        @hookimpl
        def register_payment_providers():
            return [MajorUnits]

        class TestMajorUnits(GoodPayContract):
            provider_class = MajorUnits
    ''',
    "test_slow_listing": '''
        import time
        from topup import hookimpl
        from goodpay import GoodPay, GoodPayContract

        class SlowListing(GoodPay):
            def serves(self, country, currency):
                time.sleep(0.3)  # e.g. asks an API on every product page
                return super().serves(country, currency)

        @hookimpl
        def register_payment_providers():
            return [SlowListing]

        class TestSlowListing(GoodPayContract):
            provider_class = SlowListing
            listing_budget_seconds = 0.2
    ''',
    "test_refund_claim": '''
        from topup import hookimpl
        from goodpay import GoodPay, GoodPayContract

        class RefundClaim(GoodPay):
            supports_refund = False

            def refund(self, payment):
                return None  # says it cannot refund, then pretends to

        @hookimpl
        def register_payment_providers():
            return [RefundClaim]

        class TestRefundClaim(GoodPayContract):
            provider_class = RefundClaim
    ''',
    "test_shared_reference": '''
        from topup import hookimpl
        from topup.payments import PaymentAction
        from goodpay import GoodPay, GoodPayContract

        class SharedReference(GoodPay):
            def start(self, order, return_url):
                return PaymentAction(kind="instructions", provider_ref="gp-same")

        @hookimpl
        def register_payment_providers():
            return [SharedReference]

        class TestSharedReference(GoodPayContract):
            provider_class = SharedReference
    ''',
    "test_double_credit": '''
        import time
        from topup import hookimpl
        from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
        from topup.testing import DeliveryBackendContract

        LEDGER = []  # (order public id, reference), one per credit
        ACCOUNTS = []  # (account id, reference), for ByAccount


        class DoubleCredit(DeliveryBackend):
            id, name = "double", "Credits on every call"
            lookup_seconds = 0

            def lookup_account(self, product, account_id):
                time.sleep(self.lookup_seconds)
                return AccountInfo(account_id, found=True)

            def deliver(self, order):
                LEDGER.append((order.public_id, f"D-{len(LEDGER)}"))
                return DeliveryResult("delivered", reference=LEDGER[-1][1])


        class ByAccount(DoubleCredit):
            id = "byaccount"

            def deliver(self, order):  # "idempotent" on the account, not the order
                mine = [ref for account, ref in ACCOUNTS if account == order.account_id]
                if not mine:
                    ACCOUNTS.append((order.account_id, f"A-{len(ACCOUNTS)}"))
                    LEDGER.append((order.public_id, ACCOUNTS[-1][1]))
                    mine = [ACCOUNTS[-1][1]]
                return DeliveryResult("delivered", reference=mine[0])


        class SlowLookup(DoubleCredit):
            id = "slowlookup"
            lookup_seconds = 0.3

            def deliver(self, order):  # idempotent, as it should be
                mine = [ref for public_id, ref in LEDGER if public_id == order.public_id]
                if not mine:
                    LEDGER.append((order.public_id, f"S-{len(LEDGER)}"))
                    mine = [LEDGER[-1][1]]
                return DeliveryResult("delivered", reference=mine[0])


        @hookimpl
        def register_delivery_backends():
            return [DoubleCredit, ByAccount, SlowLookup]


        class Ledger(DeliveryBackendContract):
            def credits(self, order):
                return sum(1 for public_id, _ in LEDGER if public_id == order.public_id)


        class TestDoubleCredit(Ledger):
            backend_class = DoubleCredit


        class TestByAccount(Ledger):
            backend_class = ByAccount


        class TestSlowLookup(Ledger):
            backend_class = SlowLookup
            lookup_budget_seconds = 0.2
    ''',
}

# What each faulty plugin must fail, and nothing else (the good one fails nothing).
EXPECTED_FAILURES = {
    "TestGood": set(),
    "TestTrusting": {"test_a_forged_webhook_changes_nothing",
                     "test_a_tampered_body_is_rejected_or_not_trusted"},
    "TestMajorUnits": {"test_the_event_is_the_order_total_in_minor_units",
                       "test_a_valid_webhook_pays_the_order_and_it_is_delivered",
                       "test_a_duplicate_event_changes_nothing"},  # needs a person, not paid
    "TestSlowListing": {"test_serves_its_country_quickly"},
    "TestRefundClaim": {"test_refunds_behave_as_supports_refund_says"},
    "TestSharedReference": {"test_start_returns_an_action_with_a_unique_reference"},
    "TestDoubleCredit": {"test_deliver_is_idempotent_on_the_order"},
    "TestByAccount": {"test_each_order_is_credited_on_its_own"},
    "TestSlowLookup": {"test_lookup_answers_within_the_budget"},
}


def run_pytest(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """pytest in a fresh process, as a plugin author runs it (the kit loads
    through its pytest11 entry point; no topup conftest is in reach)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TOPUP_", "PYTEST_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_kit_is_a_pytest_plugin_of_the_topup_distribution():
    points = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in points if ep.name == "topup"] == ["topup.testing"], (
        "reinstall topup (make install-test) to register its pytest11 entry point")


def test_the_contract_kit_fails_each_faulty_plugin_on_its_fault_only(tmp_path):
    (tmp_path / "goodpay.py").write_text(textwrap.dedent(GOODPAY))
    for name, source in KIT_SELF_TEST.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    result = run_pytest(["-q", "--junitxml", str(tmp_path / "report.xml")], tmp_path)
    outcomes: dict[str, dict[str, bool]] = {}
    for case in ElementTree.parse(tmp_path / "report.xml").iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        assert case.find("skipped") is None, case.attrib
        cls = case.get("classname").rsplit(".", 1)[-1]
        outcomes.setdefault(cls, {})[case.get("name")] = failed
    assert set(outcomes) == set(EXPECTED_FAILURES), result.stdout[-3000:]
    for cls, expected in EXPECTED_FAILURES.items():
        failed = {name for name, bad in outcomes[cls].items() if bad}
        assert failed == expected, (cls, failed, result.stdout[-3000:])
        assert len(outcomes[cls]) >= 7  # the whole contract ran


# --- the example package: its own tests, and selling through it end to end --------------------


def test_the_example_is_a_payment_plugin_in_under_100_lines():
    lines = (EXAMPLE / "topup_spei" / "__init__.py").read_text().splitlines()
    assert len(lines) < 100


def test_the_example_package_passes_its_own_tests_with_the_contract_kit():
    result = run_pytest(["-q"], EXAMPLE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    counts = re.search(r"(\d+) passed", result.stdout)
    assert counts and int(counts.group(1)) >= 20, result.stdout[-1000:]
    assert not re.search(r"\d+ (failed|skipped|error)", result.stdout), result.stdout[-1000:]


SPEI_SECRET = "spei-e2e-secret-" + "e" * 20
CLABE = "002010077777777771"


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"], "spei": {
        "clabe": CLABE, "beneficiary": "Topup Mexico SA de CV", "bank": "Banamex",
        "notification_secret": SPEI_SECRET}}
    return config


def test_the_installed_example_sells_for_its_country_end_to_end(app, client):
    assert "spei" in {ep.name for ep in importlib.metadata.entry_points(group="topup")}, (
        "install the example package: make install-test")
    assert 'value="spei"' in client.get("/tiktok-coins?country=MX").get_data(as_text=True)
    assert 'value="spei"' not in client.get("/tiktok-coins?country=BR").get_data(as_text=True)
    order = place_order(client, country="MX", method="spei")
    concepto = order.latest_payment().provider_ref
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert CLABE in page and concepto in page
    body = json.dumps({"claveRastreo": "MBAN01002407150000777", "conceptoPago": concepto,
                       "cuentaBeneficiario": CLABE,
                       "monto": str(order.total.to_decimal())}).encode()
    forged = client.post("/webhooks/spei", data=body, headers={
        "Spei-Signature": signing.sign("not-the-secret", body)})
    assert forged.status_code == 400 and status(order) == orders.AWAITING_PAYMENT
    response = client.post("/webhooks/spei", data=body, headers={
        "Content-Type": "application/json",
        "Spei-Signature": signing.sign(SPEI_SECRET, body, int(time.time()))})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert status(order) == orders.PAID
    assert worker.deliver_once(app)
    assert status(order) == orders.DELIVERED
    report = app.test_cli_runner().invoke(main, ["plugins"]).output.splitlines()
    assert "spei 0.1.0: register_payment_providers" in report
