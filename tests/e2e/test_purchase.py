"""A buyer on a phone, from the product page to delivered coins, in a real browser.

The same purchase is made with JavaScript on (htmx checks the username and
reloads the prices in place; the order page updates itself) and off (plain
forms, a <noscript> meta refresh). Payment is the sandbox checkout, which
notifies the live server with a signed webhook; delivery is the sandbox ledger,
run by the live server's worker thread.
"""
from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from topup import orders
from topup.models import Order

from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

ORDER_URL = re.compile(r"/orders/([A-Za-z0-9_-]+)$")
CHECKOUT_URL = re.compile(r"/sandbox/checkout/sbx_[A-Za-z0-9_-]+$")
SETTLE_MS = 15_000  # webhook + worker + one or two polls (2 s with htmx, 4 s without)


# --- what a buyer does ------------------------------------------------------------


def open_shop(page: Page, live_server) -> None:
    page.goto(live_server.url + "/")  # the only product's page, served at once
    expect(page.get_by_role("heading", level=1)).to_have_text("Top up TikTok Coins")


def package(page: Page, coins: int):
    """The radio button of a package, by what the buyer reads: "70 coins R$5.17"."""
    return page.get_by_role("radio", name=re.compile(rf"^{coins:,} coins\b"))


def choose_sandbox_and_package(page: Page, coins: int = 70) -> None:
    package(page, coins).check()
    page.get_by_role("radio", name="Sandbox (test payment)").check()


def press(page: Page, name: str) -> None:
    """Press a form's button (JavaScript off) and wait for the page it posts to."""
    button = page.get_by_role("button", name=name)
    with page.expect_event("load"):
        try:
            with page.expect_request(lambda r: r.method == "POST" and r.is_navigation_request(),
                                     timeout=5_000):
                button.click()
        except PlaywrightTimeout:
            stopped_by = page.locator("input:invalid, select:invalid").evaluate_all(
                "fields => [...new Set(fields.map(f => `${f.name}: ${f.validationMessage}`))]")
            raise AssertionError(f"pressing {name!r} did not post the form; the browser's own "
                                 f"form validation stopped it: {stopped_by}") from None


def order_id(page: Page) -> str:
    expect(page).to_have_url(ORDER_URL)
    return ORDER_URL.search(page.url).group(1)


def pay_in_sandbox(page: Page, decision: str) -> None:
    """From the order page: Pay, then Approve or Decline on the sandbox checkout."""
    order_url = page.url
    page.get_by_role("link", name=re.compile(r"^Pay ")).click()
    expect(page).to_have_url(CHECKOUT_URL)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sandbox checkout")
    page.get_by_role("button", name=f"{decision} payment").click()
    expect(page).to_have_url(order_url)


def stored_order(app, public_id: str) -> Order:
    with app.app_context():
        return Order.get(Order.public_id == public_id)


# --- the tests --------------------------------------------------------------------


def test_purchase_with_javascript_checks_inline_and_updates_by_itself(app, live_server,
                                                                      browser_page):
    page = browser_page
    # The landing page as the shop serves it: made once, gzip joined around this
    # buyer's tokens (topup.web.shop.Landing); the purchase below posts those tokens.
    app.config["PAGE_CACHE_SECONDS"] = 60
    with page.expect_response(live_server.url + "/") as landing:
        open_shop(page, live_server)
    assert landing.value.headers["content-encoding"] == "gzip"
    product_url = page.url
    page.evaluate("window.__samePage = true")  # gone if anything below reloads the page

    # Country: htmx swaps the packages and methods for ones priced in reais.
    expect(package(page, 70)).to_be_visible()
    expect(page.locator("#options")).not_to_contain_text("R$")
    with page.expect_response(re.compile(r"/tiktok-coins/options\?")) as options:
        page.locator("#country").select_option(label="Brazil (BRL)")
    assert options.value.status == 200
    expect(page.locator("#options .pack").first).to_contain_text("R$")
    expect(page.locator("label.pack", has=package(page, 70))).to_contain_text("R$")

    # Username: checked as it is typed, the nickname shown under the field.
    check = page.locator("#account-check")
    expect(check).to_contain_text("We'll show the account's name")
    page.locator("#account").fill("@maria.santos")
    expect(check).to_contain_text("Maria Santos")
    expect(check).to_contain_text("@maria.santos")
    page.locator("#account").fill("nobody_x")
    expect(check).to_have_text("No such account.")
    expect(check).not_to_contain_text("Maria Santos")
    page.locator("#account").fill("@maria.santos")
    expect(check).to_contain_text("✓ Maria Santos")
    assert page.url == product_url
    assert page.evaluate("window.__samePage") is True, "the inline checks reloaded the page"

    choose_sandbox_and_package(page, 70)
    page.locator("#email").fill("maria@example.com")
    page.get_by_role("button", name="Buy").click()

    public_id = order_id(page)
    assert len(public_id) >= 20, f"order ids must not be guessable: {public_id!r}"
    summary = page.locator("dl.summary")
    expect(summary).to_contain_text("70 coins")
    expect(summary).to_contain_text("@maria.santos (Maria Santos)")
    expect(summary).to_contain_text("R$")
    expect(summary).to_contain_text(public_id)
    live = page.locator("#live")
    expect(live.get_by_role("heading")).to_have_text("Waiting for your payment")

    pay_in_sandbox(page, "Approve")

    # Back on the order page, nobody touches it: htmx polling brings the news.
    page.evaluate("window.__samePage = true")
    expect(live.get_by_role("heading")).to_have_text("Delivered", timeout=SETTLE_MS)
    expect(live).to_contain_text("70 coins were added to @maria.santos.")
    expect(live.locator("code")).to_have_text(re.compile(r"^SBX-\d{6}$"))
    assert page.evaluate("window.__samePage") is True, "the order page was reloaded"

    order = stored_order(app, public_id)
    assert (order.status, order.country, order.currency, order.quantity) == (
        orders.DELIVERED, "BR", "BRL", 70)
    assert (order.account_id, order.email) == ("maria.santos", "maria@example.com")


def test_purchase_without_javascript_uses_plain_forms(app, live_server, no_js_page):
    page = no_js_page
    open_shop(page, live_server)

    # Country: the <noscript> "Show prices" button posts the form back.
    page.locator("#country").select_option("BR")
    press(page, "Show prices")
    expect(page.locator("#country")).to_have_value("BR")
    expect(page.locator("label.pack", has=package(page, 70))).to_contain_text("R$")

    # Username: "Check username" does the same, keeping what was chosen.
    page.locator("#account").fill("@maria.santos")
    press(page, "Check username")
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    expect(page.locator("#account")).to_have_value("@maria.santos")
    expect(page.locator("#country")).to_have_value("BR")

    package(page, 70).check()
    press(page, "Buy")
    public_id = order_id(page)
    order_url = page.url
    live = page.locator("#live")
    expect(live.get_by_role("heading")).to_have_text("Waiting for your payment")
    expect(page.locator("#live")).to_contain_text("R$")

    # The <noscript> Refresh link reloads the same order page.
    page.get_by_role("link", name="Refresh").click()
    expect(page).to_have_url(order_url)
    expect(live.get_by_role("heading")).to_have_text("Waiting for your payment")

    pay_in_sandbox(page, "Approve")

    # The <noscript> meta refresh (every 4 s) reloads the page until it is final.
    expect(live.get_by_role("heading")).to_have_text("Delivered", timeout=SETTLE_MS)
    expect(live.locator("code")).to_have_text(re.compile(r"^SBX-\d{6}$"))
    expect(page.get_by_role("link", name="Refresh")).to_have_count(0)
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)
    assert stored_order(app, public_id).status == orders.DELIVERED


def test_declined_payment_offers_to_try_again_with_the_same_choices(app, live_server,
                                                                    browser_page):
    page = browser_page
    open_shop(page, live_server)
    page.locator("#country").select_option("MX")
    expect(page.locator("label.pack", has=package(page, 70))).to_contain_text("$")
    page.locator("#account").fill("maria.santos")
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    choose_sandbox_and_package(page, 70)
    page.get_by_role("button", name="Buy").click()
    public_id = order_id(page)

    pay_in_sandbox(page, "Decline")

    live = page.locator("#live")
    expect(live.get_by_role("heading")).to_have_text("Payment didn't go through",
                                                     timeout=SETTLE_MS)
    expect(live).to_contain_text("No money was taken for this order.")
    assert stored_order(app, public_id).status == orders.FAILED

    page.get_by_role("link", name="Try again").click()
    expect(page).to_have_url(re.compile(r"/tiktok-coins\?"))
    expect(page.locator("#account")).to_have_value("maria.santos")
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    expect(page.locator("#country")).to_have_value("MX")
    expect(package(page, 70)).to_be_checked()
    expect(page.get_by_role("radio", name="Sandbox (test payment)")).to_be_checked()


class HoldFirstBuy:
    """WSGI middleware standing for a slow network: the first Buy post waits
    (up to 5 s) until a second one has reached the server; the second waits
    until the first is answered. Counts the Buy posts it saw, and notes for
    each whether what it waited for came in time."""

    def __init__(self, app):
        self.wsgi_app = app.wsgi_app
        self.started = self.finished = 0
        self.lock = threading.Lock()
        self.second_arrived = threading.Event()
        self.first_answered = threading.Event()
        self.waited_in_time: dict[int, bool] = {}

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/tiktok-coins":
            return self.wsgi_app(environ, start_response)
        with self.lock:
            self.started += 1
            number = self.started
        try:
            if number == 1:
                self.waited_in_time[number] = self.second_arrived.wait(5)
            else:
                self.second_arrived.set()
                self.waited_in_time[number] = self.first_answered.wait(5)
            return self.wsgi_app(environ, start_response)
        finally:
            if number == 1:
                self.first_answered.set()
            with self.lock:
                self.finished += 1


def tap_twice(page: Page, button, between) -> None:
    """Two taps on the button; between() runs after the first. Low-level taps:
    unlike click(), they do not wait for the navigation the first one starts."""
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.touchscreen.tap(x, y)
    between()
    page.touchscreen.tap(x, y)


def fill_in_buyer(page: Page, live_server) -> None:
    open_shop(page, live_server)
    page.locator("#account").fill("@maria.santos")
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    choose_sandbox_and_package(page, 70)


def test_second_tap_on_buy_while_the_first_is_on_its_way_places_one_order(
        app, live_server, browser_page, monkeypatch):
    """Chromium sends a quick double click as one post, but a buyer on a slow
    network taps again while the first post is still on its way: the browser
    then posts the form a second time, with the same idempotency key, and the
    server sees both."""
    posts = HoldFirstBuy(app)
    monkeypatch.setattr(app, "wsgi_app", posts)
    page = browser_page
    fill_in_buyer(page, live_server)
    tap_twice(page, page.get_by_role("button", name="Buy"),
              between=lambda: wait_for(lambda: posts.started == 1))

    public_id = order_id(page)
    wait_for(lambda: posts.finished == posts.started)
    assert posts.started == 2, f"the browser posted the form {posts.started} time(s), not 2"
    assert posts.waited_in_time == {1: True, 2: True}
    with app.app_context():
        assert [o.public_id for o in Order.select()] == [public_id]
    expect(page.locator("#live").get_by_role("heading")).to_have_text(
        "Waiting for your payment")
    expect(page.get_by_role("link", name=re.compile(r"^Pay "))).to_be_visible()


def test_second_tap_while_the_payment_is_being_prepared_still_shows_how_to_pay(
        app, live_server, browser_page, monkeypatch):
    """The first Buy post has created the order and is waiting on a slow payment
    provider; the second post finds the order and shows its page, before the
    provider has said how to pay. That page must come to show the Pay link."""
    provider = app.extensions["topup"].providers["sandbox"]
    start = provider.start
    starting, answer = threading.Event(), threading.Event()
    answered_in_time = []

    def slow_start(order, return_url):
        starting.set()
        # a real provider's API can take seconds: this one answers when told to
        answered_in_time.append(answer.wait(15))
        return start(order, return_url=return_url)

    def first_post_is_with_the_provider():
        assert starting.wait(5), "the first Buy post never reached the payment provider"

    monkeypatch.setattr(provider, "start", slow_start)
    page = browser_page
    fill_in_buyer(page, live_server)
    try:
        tap_twice(page, page.get_by_role("button", name="Buy"),
                  between=first_post_is_with_the_provider)

        public_id = order_id(page)
        heading = page.locator("#live").get_by_role("heading")
        expect(heading).to_have_text("Preparing your payment…")  # the second post's answer
    finally:
        answer.set()
    expect(heading).to_have_text("Waiting for your payment",
                                 timeout=6_000)  # the page polls every 2 s
    expect(page.get_by_role("link", name=re.compile(r"^Pay "))).to_be_visible()
    assert answered_in_time == [True]
    with app.app_context():
        assert [o.public_id for o in Order.select()] == [public_id]
