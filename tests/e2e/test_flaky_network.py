"""A buyer on a bad connection: requests that never arrive, time out or meet a
server error, and reloads at any moment.

When an htmx request fails, static/topup.js puts a short message (in the
page's language, from base.html) beside the element that sent it, as an
alert, with a "Try again" button; the next answer that comes takes it away,
whether it came from the button, from the buyer's next change, or from the
order page's own polling. The order page can be reloaded at every step of the
order and shows that step. (Buy pressed twice: tests/e2e/test_purchase.py.)
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from topup import orders
from topup.models import Order

from tests.conftest import LiveServer, sandbox_event, signed_headers
from tests.e2e.conftest import allow_trouble, snap
from tests.e2e.shop import words
from tests.e2e.test_purchase import ORDER_URL, SETTLE_MS, fill_in_buyer, open_shop, package

pytestmark = pytest.mark.e2e

ACCOUNT_CHECK = re.compile(r"/tiktok-coins/account\?")
OPTIONS = re.compile(r"/tiktok-coins/options\?")
LIVE = re.compile(r"/orders/[A-Za-z0-9_-]+/live\?")
NO_CONNECTION = "No connection. Check your signal and try again."
OUR_FAULT = "Something went wrong on our side. Please try again in a moment."


def expect_failures(page: Page) -> None:
    """What the browser and htmx log when requests fail: expected in these tests."""
    allow_trouble(page, r"ERR_INTERNET_DISCONNECTED", r"ERR_FAILED",
                  r"htmx:(sendError|timeout|responseError|afterRequest)",
                  r"HTTP 503 for GET .*/live\?", r"status of 503",
                  r"Response Status Error Code 503")


def notify_paid(app, public_id: str) -> None:
    """The payment provider's webhook, as the sandbox checkout would send it."""
    with app.app_context():
        body = sandbox_event(Order.get(Order.public_id == public_id))
    response = app.test_client().post("/webhooks/sandbox", data=body,
                                      headers=signed_headers(body))
    assert response.status_code == 200, response.get_data(as_text=True)


def buy_with_sandbox(page: Page, live_server) -> str:
    fill_in_buyer(page, live_server)
    page.get_by_role("button", name="Buy").click()
    expect(page).to_have_url(ORDER_URL)
    return ORDER_URL.search(page.url).group(1)


def test_username_check_without_signal_says_so_and_tries_again(live_server, browser_page):
    page = browser_page
    expect_failures(page)
    open_shop(page, live_server)
    check = page.locator("#account-check")
    page.route(ACCOUNT_CHECK, lambda route: route.abort("internetdisconnected"))

    page.locator("#account").fill("@maria.santos")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(rf"^{re.escape(NO_CONNECTION)}\s*Try again$"))
    expect(page.locator("#account + .offline")).to_be_visible()  # just under the field
    expect(check).not_to_contain_text("Maria Santos")
    snap(page, "flaky-account-check-no-connection")

    # Back in signal: the button asks again, the answer replaces the message.
    page.unroute(ACCOUNT_CHECK)
    page.get_by_role("button", name="Try again").click()
    expect(check).to_contain_text("✓ Maria Santos")
    expect(alert).to_have_count(0)
    expect(page.locator("#account")).to_be_focused()  # not lost with the button

    # Lost again, then the buyer simply goes on typing: the next check clears it.
    page.route(ACCOUNT_CHECK, lambda route: route.abort("internetdisconnected"))
    page.locator("#account").fill("@maria.s")
    expect(alert).to_contain_text(NO_CONNECTION)
    expect(alert).to_have_count(1)
    page.unroute(ACCOUNT_CHECK)
    page.locator("#account").fill("@maria.sa")
    expect(check).to_contain_text("Maria Sa")
    expect(alert).to_have_count(0)


def test_prices_that_time_out_say_so_and_come_with_the_next_choice(live_server, browser_page):
    page = browser_page
    expect_failures(page)
    open_shop(page, live_server)
    page.evaluate("htmx.config.timeout = 1000")  # base.html says 20 s; a test has less time
    held = []
    page.route(OPTIONS, lambda route: held.append(route))  # asked, never answered

    page.locator("#country").select_option("BR")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(NO_CONNECTION)
    expect(page.locator("#country + .offline")).to_be_visible()
    expect(page.locator("#options")).not_to_contain_text("R$")  # the old prices stay
    assert len(held) == 1

    page.unroute(OPTIONS)
    page.evaluate("htmx.config.timeout = 20000")  # a slow answer now is still an answer
    page.locator("#country").select_option("MX")
    expect(page.locator("label.pack", has=package(page, 70))).to_contain_text("17.00")
    expect(alert).to_have_count(0)


def test_order_page_keeps_polling_through_errors_and_lost_signal(app, live_server,
                                                                 browser_page):
    page = browser_page
    expect_failures(page)
    public_id = buy_with_sandbox(page, live_server)
    live = page.locator("#live")
    alert = page.get_by_role("alert")

    page.route(LIVE, lambda route: route.fulfill(status=503, body="busy"))
    expect(alert).to_contain_text(OUR_FAULT, timeout=SETTLE_MS)
    expect(page.locator("#live + .offline")).to_be_visible()
    page.route(LIVE, lambda route: route.abort("internetdisconnected"))
    expect(alert).to_contain_text(NO_CONNECTION, timeout=SETTLE_MS)  # the same message, new words
    expect(alert).to_have_count(1)
    snap(page, "flaky-order-page-no-connection")

    notify_paid(app, public_id)  # paid and delivered while the phone had no signal
    with app.app_context():
        assert Order.get(Order.public_id == public_id).status in (orders.PAID, orders.DELIVERING,
                                                                  orders.DELIVERED)
    expect(live.get_by_role("heading")).to_have_text("Waiting for your payment")
    page.unroute(LIVE)  # signal again: the next poll brings the news, nobody touches a thing
    expect(live.get_by_role("heading")).to_have_text("Delivered", timeout=SETTLE_MS)
    expect(alert).to_have_count(0)


def test_no_connection_message_is_in_the_buyers_language(app, live_server, open_page):
    page = open_page(locale="vi-VN")
    expect_failures(page)
    t = words(app, "vi")
    page.goto(live_server.url + "/")
    page.route(ACCOUNT_CHECK, lambda route: route.abort("internetdisconnected"))
    page.locator("#account").fill("@maria.santos")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(t(NO_CONNECTION))
    assert t(NO_CONNECTION) != NO_CONNECTION
    page.unroute(ACCOUNT_CHECK)
    alert.get_by_role("button", name=t("Try again")).click()
    expect(page.locator("#account-check")).to_contain_text("Maria Santos")
    expect(alert).to_have_count(0)


@pytest.fixture
def server_without_workers(app):
    """The shop with no delivery worker: the test moves the order on itself."""
    server = LiveServer(app, workers=0).start()
    yield server
    server.stop()


def test_order_page_survives_a_reload_at_every_step(app, server_without_workers, browser_page):
    page = browser_page
    public_id = buy_with_sandbox(page, server_without_workers)
    order_url = page.url
    live = page.locator("#live")

    def reload_shows(heading: str, text: str, step: str) -> None:
        page.reload()
        expect(page).to_have_url(order_url)
        expect(live.get_by_role("heading")).to_have_text(heading)
        expect(live).to_contain_text(text)
        expect(page.locator("dl.summary")).to_contain_text(public_id)
        snap(page, f"reload-{step}")
        with app.app_context():
            assert [o.public_id for o in Order.select()] == [public_id]

    reload_shows("Waiting for your payment", "This page updates by itself", "awaiting-payment")
    expect(page.get_by_role("link", name=re.compile(r"^Pay "))).to_be_visible()

    notify_paid(app, public_id)
    expect(live.get_by_role("heading")).to_have_text("Paid")  # polled
    reload_shows("Paid", "Payment received. We are sending your coins now.", "paid")

    with app.app_context():
        delivery = orders.claim_delivery()  # a worker has taken it, the backend is working
        assert Order.get(Order.public_id == public_id).status == orders.DELIVERING
    expect(live).to_contain_text("Sending your coins…")  # polled
    reload_shows("Paid", "Sending your coins… This usually takes a few seconds.", "delivering")

    with app.app_context():
        backend = app.extensions["topup"].backends[delivery.backend]
        orders.record_delivery_result(delivery, backend.deliver(delivery.order))
    expect(live.get_by_role("heading")).to_have_text("Delivered")  # polled
    reload_shows("Delivered", "70 coins were added to @maria.santos.", "delivered")
    expect(live.locator("code")).to_have_text(re.compile(r"^SBX-\d{6}$"))
    expect(page.locator("#live[data-hx-get]")).to_have_count(0)  # final: polling stops
