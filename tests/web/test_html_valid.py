"""Every page a buyer can meet, and every htmx partial, is valid HTML.

The documents are rendered with the Flask test client, written to files and
checked by the Nu HTML Checker (vnu.jar, npm `vnu-jar`, installed into
tests/e2e/node_modules by `make install-test`) in one Java run: starting the
JVM is the slow part. Partials are fragments, so each is wrapped in a minimal
document shaped like the place htmx swaps it into.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from topup.models import Delivery, Order, Payment, Product
from topup.worker import deliver_once

from tests.conftest import buy, place_order, sandbox_event, signed_headers
from tests.web import HX

VNU = (Path(__file__).resolve().parents[1] / "e2e" / "node_modules" / "vnu-jar" / "build" / "dist"
       / "vnu.jar")

# Payment methods that show a QR code or bank-transfer instructions on the order page.
PLUGIN_SETTINGS = {
    "pix": {"key": "123e4567-e12b-12d1-a456-426655440000", "merchant_name": "Fulano de Tal",
            "merchant_city": "BRASILIA"},
    "spei": {"clabe": "002010077777777771", "beneficiary": "Mi Tienda SA de CV",
             "bank": "Banamex"},
}
# Where each partial lands in the page (templates/shop/product.html, orders/order.html).
SHELLS = {
    "account": '<div id="account-check" class="check" aria-live="polite">{}</div>',
    "options": '<form method="post" action="/tiktok-coins">{}</form>',
    "live": '<div aria-live="polite">{}</div>',
}
DOCUMENT = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name}</title>'
            '</head><body><main>{body}</main></body></html>')


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"], **PLUGIN_SETTINGS}
    # On, but out of reach until the end of the test, which then meets the 429 pages.
    config.update(RATELIMIT_ENABLED=True, LOOKUP_RATE_LIMIT="10000 per minute",
                  ORDER_RATE_LIMIT="10000 per minute")
    return config


class Documents:
    def __init__(self, client):
        self.client = client
        self.html: dict[str, str] = {}

    def page(self, name, path, status=200, **kwargs):
        return self.add(name, self.client.open(path, **kwargs), status)

    def partial(self, name, shell, path, status=200, **kwargs):
        return self.add(name, self.client.get(path, headers=HX, **kwargs), status, shell)

    def add(self, name, response, status, shell=None):
        assert response.status_code == status, (name, response.status_code)
        assert response.mimetype == "text/html", name
        text = response.get_data(as_text=True)
        assert ("<html" in text) == (shell is None), name
        if shell:
            text = DOCUMENT.format(name=name, body=SHELLS[shell].format(text))
        assert name not in self.html, name
        self.html[name] = text
        return response


def notify(client, order, kind="succeeded"):
    payload = sandbox_event(order, kind)
    response = client.post("/webhooks/sandbox", data=payload, headers=signed_headers(payload))
    assert response.status_code == 200, response.get_data(as_text=True)


def order_states(docs: Documents, client, app):
    """The order page and its live partial in every state it can show."""
    def both(name, order):
        docs.page(f"order {name}", f"/orders/{order.public_id}")
        docs.partial(f"live {name}", "live", f"/orders/{order.public_id}/live")

    order = place_order(client, account="@maria.santos", email="ops@example.com")
    both("awaiting payment (pay link)", order)
    docs.page("sandbox checkout", f"/sandbox/checkout/{order.latest_payment().provider_ref}")
    both("awaiting payment (QR code, Pix)", place_order(client, country="BR", method="pix"))
    both("awaiting payment (SPEI instructions)", place_order(client, country="MX", method="spei"))

    preparing = place_order(client)
    Payment.update(action=None).where(Payment.order == preparing).execute()
    both("preparing payment", preparing)

    notify(client, order)
    both("paid", order)
    Order.update(status="delivering").where(Order.id == order.id).execute()
    both("delivering", order)
    Delivery.update(status="waiting").where(Delivery.order == order).execute()
    both("queued", order)
    Order.update(status="paid").where(Order.id == order.id).execute()
    Delivery.update(status="pending").where(Delivery.order == order).execute()
    assert deliver_once(app)
    assert Order.get_by_id(order.id).status == "delivered"
    both("delivered", order)

    declined = place_order(client, country="MX")
    notify(client, declined, "failed")
    assert Order.get_by_id(declined.id).status == "failed"
    both("failed", declined)
    for status in ("expired", "needs_attention", "canceled", "refunded"):
        other = place_order(client, country="TH")
        Order.update(status=status).where(Order.id == other.id).execute()
        both(status, other)


def sign_in_as_operator(client, runner, email):
    from topup.cli import main
    from tests.conftest import CSRF

    result = runner.invoke(main, ["admin-link", "--email", email])
    assert result.exit_code == 0, result.output
    path = urlparse(result.output.splitlines()[0]).path
    confirm = client.get(path)
    assert confirm.status_code == 200
    return confirm, path, CSRF.search(confirm.get_data(as_text=True)).group(1)


def test_every_buyer_page_and_partial_is_valid_html(app, client, runner, tmp_path):
    assert shutil.which("java"), "no Java: the Nu HTML Checker needs it (default-jre-headless)"
    assert VNU.is_file(), f"no {VNU}: run `make install-test`"
    docs = Documents(client)

    # The product page: landing, filled in from a link, each language, JavaScript-off answers.
    docs.page("landing", "/")
    docs.page("product page", "/tiktok-coins")
    docs.page("product page, account found", "/tiktok-coins?account=maria.santos&country=BR"
              "&package=1&method=sandbox&email=m%40example.com")
    docs.page("product page, no such account", "/tiktok-coins?account=nobody_x")
    docs.page("product page, invalid account", "/tiktok-coins?account=a%20b%20c")
    for lang in ("id", "pt_BR", "es", "th", "vi"):
        docs.page(f"product page ({lang})", f"/tiktok-coins?lang={lang}")
    client.get("/tiktok-coins?lang=en")  # the switcher's cookie: back to English
    docs.page("product page, no payment method", "/tiktok-coins?country=DE")
    docs.add("Buy with nothing chosen (422)",
             buy(client, account="", coins=None, method="", email="not-an-address"), 422)
    docs.add("Buy with bad choices (422)", buy(client, country="XX", account="nobody_y",
                                                method="nope", idempotency_key="short"), 422)
    docs.add("no-JS Show prices", buy(client, country="BR", intent="refresh"), 200)

    # The partials the product page swaps in.
    docs.partial("account partial, empty", "account", "/tiktok-coins/account?account=")
    docs.partial("account partial, found", "account", "/tiktok-coins/account?account=%40maria.s")
    docs.partial("account partial, not found", "account",
                 "/tiktok-coins/account?account=nobody_z")
    docs.partial("account partial, invalid", "account", "/tiktok-coins/account?account=%3C%3E")
    docs.partial("options partial", "options", "/tiktok-coins/options?country=BR")
    docs.partial("options partial, no payment method", "options",
                 "/tiktok-coins/options?country=FI")

    order_states(docs, client, app)

    # Error pages, sign-in pages, the signed-in buyer's orders.
    docs.page("404", "/no-such-page", 404)
    docs.page("404 order", "/orders/no-such-order", 404)
    docs.page("405", "/orders/x/live", 405, method="POST")
    docs.add("400 expired form", client.post("/tiktok-coins", data={"intent": "buy"}), 400)
    docs.page("account sign-in", "/account/sign-in")
    docs.page("operator sign-in", "/admin/sign-in")
    confirm, path, token = sign_in_as_operator(client, runner, "ops@example.com")
    docs.add("operator link", confirm, 200)
    assert client.post(path, data={"csrf_token": token}).status_code == 303
    docs.page("account, orders", "/account")

    # Over the limits: the 429 page and the 429 account partial.
    app.config.update(LOOKUP_RATE_LIMIT="1 per hour")
    elsewhere = {"environ_base": {"REMOTE_ADDR": "192.0.2.9"}}
    docs.partial("account partial, first", "account", "/tiktok-coins/account?account=ana",
                 **elsewhere)
    docs.partial("account partial, 429", "account", "/tiktok-coins/account?account=ana2", 429,
                 **elsewhere)
    docs.page("429", "/tiktok-coins?account=ana3", 429, **elsewhere)

    # More than one product: the landing lists them; none on sale: it says so.
    Product.create(slug="more-coins", name="More Coins", unit="coins", account_kind="tiktok",
                   delivery_backend="sandbox")
    docs.page("product list", "/")
    Product.update(enabled=False).execute()
    docs.page("nothing on sale", "/")

    # A broken document goes along, so a checker that checks nothing cannot pass.
    canary = DOCUMENT.format(name="canary", body="<p>not closed</span>")
    errors = validate({**docs.html, "canary": canary}, tmp_path)
    assert errors.pop("canary", None), "the Nu HTML Checker missed a stray end tag"
    assert not errors, f"{sum(map(len, errors.values()))} HTML errors:\n" + "\n".join(
        f"{name}:\n" + "\n".join(f"  line {m.get('lastLine')}: {m['message']}  "
                                 f"[{m.get('extract', '').strip()}]" for m in messages)
        for name, messages in errors.items())
    assert len(docs.html) >= 60


def validate(documents: dict[str, str], folder: Path) -> dict[str, list[dict]]:
    """The Nu HTML Checker's errors, by document name (one JVM for all)."""
    files = {}
    for number, (name, html) in enumerate(documents.items()):
        path = folder / f"doc{number:03d}.html"
        path.write_text(html, encoding="utf-8")
        files[path.resolve()] = name
    run = subprocess.run(["java", "-jar", str(VNU), "--errors-only", "--format", "json",
                          "--exit-zero-always", *map(str, files)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stderr or run.stdout)  # vnu writes its report on stderr
    errors: dict[str, list[dict]] = {}
    for message in report["messages"]:
        path = Path(unquote(urlparse(message.get("url", "")).path)).resolve()
        errors.setdefault(files.get(path, f"? {message.get('url')}"), []).append(message)
    return errors
