"""The purchase in every language, in the country its browser says, on the two
phone screens most buyers have (360x640, 390x844), with JavaScript on and off.

A phone set to Thai (th-TH) lands on the Thai page priced in baht, types a
username, picks a package and the way people pay there (PromptPay), buys, and
gets the order page with the QR code to pay. For the offline QR and transfer
methods the order then waits for the money: that is the end of the flow here
(their payments are tested in tests/plugins). In English (en-US) the sandbox
pays, and the coins are delivered. Every step fits the screen's width, and is
kept as a screenshot in TOPUP_E2E_SCREENSHOTS (<locale>-<size>-<js|nojs>-<n>-<step>.png).
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from topup.models import Order

from tests.e2e.conftest import snap
from tests.e2e.shop import with_local_methods, words
from tests.e2e.test_purchase import CHECKOUT_URL, ORDER_URL, SETTLE_MS, package, press

pytestmark = pytest.mark.e2e

# locale: (browser language, country it lands on, currency sign on the page, payment method)
LOCALES = {
    "en": ("en-US", "US", "$", "sandbox"),
    "id": ("id-ID", "ID", "Rp", "qris"),
    "pt_BR": ("pt-BR", "BR", "R$", "pix"),
    "es": ("es-MX", "MX", "$", "spei"),  # Spanish as Mexico writes it (es_MX): "$17.00"
    "th": ("th-TH", "TH", "฿", "promptpay"),
    "vi": ("vi-VN", "VN", "₫", "vietqr"),
}
SCREENS = {"360x640": (360, 640), "390x844": (390, 844)}
WITHOUT_JS = [("es", "360x640"), ("es", "390x844"), ("th", "360x640"), ("th", "390x844")]


@pytest.fixture
def config(config):
    return with_local_methods(config)


class Flow:
    """One buyer's way through the shop, photographed at each step."""

    def __init__(self, app, page: Page, locale: str, screen: str, js: bool):
        self.app, self.page, self.locale, self.js = app, page, locale, js
        self.t = words(app, locale)
        self.name = f"{locale}-{screen}-{'js' if js else 'nojs'}"
        self.steps = 0

    def step(self, what: str) -> None:
        """The page fits the phone's width (nothing to scroll sideways); keep a picture."""
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{self.name} {what}: the page is {overflow}px wider than the screen"
        self.steps += 1
        snap(self.page, f"{self.name}-{self.steps}-{what}")


def buy_in_own_language(app, live_server, page: Page, locale: str, screen: str, js: bool):
    language, country, sign, method = LOCALES[locale]
    flow = Flow(app, page, locale, screen, js)
    t = flow.t
    provider = app.extensions["topup"].providers[method]

    page.goto(live_server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", locale.replace("_", "-"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        t("Top up %(product)s", product="TikTok Coins"))
    expect(page.get_by_label(t("Country"))).to_have_value(country)
    expect(page.locator("label.pack", has=package(page, 70))).to_contain_text(sign)
    flow.step("landing")

    page.locator("#account").fill("@maria.santos")
    if not js:
        press(page, t("Check username"))
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    flow.step("username")

    package(page, 70).check()
    method_radio = page.get_by_role("radio", name=re.compile("^" + re.escape(provider.name)))
    method_radio.check()
    expect(method_radio).to_be_checked()
    flow.step("package-and-method")

    if js:
        page.get_by_role("button", name=t("Buy")).click()
    else:
        press(page, t("Buy"))
    expect(page).to_have_url(ORDER_URL)
    public_id = ORDER_URL.search(page.url).group(1)
    live = page.locator("#live")
    expect(live.get_by_role("heading")).to_have_text(t("Waiting for your payment"))
    expect(page.locator("dl.summary")).to_contain_text(provider.name)
    with app.app_context():
        order = Order.get(Order.public_id == public_id)
    assert (order.locale, order.country, order.payment_method, order.quantity,
            order.account_id) == (locale, country, method, 70, "maria.santos")
    expect(page.locator("dl.summary")).to_contain_text(sign)

    if method == "sandbox":
        pay = page.get_by_role("link", name=t("Pay %(amount)s", amount="$0.94"))
        expect(pay).to_be_visible()
        flow.step("payment-instructions")
        pay.click()
        expect(page).to_have_url(CHECKOUT_URL)
        flow.step("sandbox-checkout")
        page.get_by_role("button", name="Approve payment").click()
        expect(page).to_have_url(re.compile(re.escape(public_id) + "$"))
        expect(live.get_by_role("heading")).to_have_text(t("Delivered"), timeout=SETTLE_MS)
        expect(live).to_contain_text("@maria.santos")
        flow.step("delivered")
    elif method == "spei":  # a bank transfer: the CLABE and the reference to type
        expect(live.locator("code.copy")).to_be_visible()
        expect(live).to_contain_text("CLABE: 002010077777777771")
        flow.step("payment-instructions")
    else:  # a QR code to scan, and the same as text to copy
        qr = live.get_by_role("img", name=re.compile(re.escape(
            t("QR code to pay %(amount)s", amount="@@").split("@@")[0])))
        expect(qr).to_be_visible()
        box = qr.bounding_box()
        assert box["width"] >= 200, f"{flow.name}: the QR code is {box['width']}px wide"
        expect(live.locator("figcaption")).to_have_text(t("Scan this code with your payment app."))
        expect(page.get_by_label(t("Or copy this code"))).to_have_value(
            order.latest_payment().action["code"])
        flow.step("payment-instructions")


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("locale", LOCALES)
def test_purchase_in_each_language_with_javascript(app, live_server, open_page, locale, screen):
    width, height = SCREENS[screen]
    page = open_page(viewport={"width": width, "height": height}, locale=LOCALES[locale][0])
    buy_in_own_language(app, live_server, page, locale, screen, js=True)


@pytest.mark.parametrize("locale, screen", WITHOUT_JS)
def test_purchase_in_each_language_without_javascript(app, live_server, open_page, locale,
                                                      screen):
    width, height = SCREENS[screen]
    page = open_page(viewport={"width": width, "height": height}, locale=LOCALES[locale][0],
                     java_script_enabled=False)
    buy_in_own_language(app, live_server, page, locale, screen, js=False)
