"""axe-core on every step of a purchase, as a screen reader user would meet it:
no "serious" or "critical" violation anywhere (the lesser ones are printed).

Steps: the product page; the username checked (found, then not found); Buy
refused with the errors shown; a part of the page that could not update (no
connection); the order page with a QR code and with a Pay link; the sandbox
checkout; the delivered order; the 404 page; the buyer's sign-in page.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import allow_trouble, axe_check, with_axe
from tests.e2e.shop import with_local_methods
from tests.e2e.test_purchase import (ORDER_URL, SETTLE_MS, choose_sandbox_and_package, open_shop,
                                     package, pay_in_sandbox)

pytestmark = pytest.mark.e2e


@pytest.fixture
def config(config):
    return with_local_methods(config)


def test_no_serious_accessibility_problems_on_any_step(live_server, browser_page):
    page = browser_page
    with_axe(page)
    open_shop(page, live_server)
    axe_check(page, "product page")

    check = page.locator("#account-check")
    page.locator("#account").fill("nobody_here")
    expect(check).to_have_text("No such account.")
    axe_check(page, "account not found")
    page.locator("#account").fill("@maria.santos")
    expect(check).to_contain_text("Maria Santos")
    axe_check(page, "account checked")

    # Buy refused: a browser that does not check forms itself posts it half filled in.
    page.locator("#email").fill("not an address")
    page.evaluate("document.querySelectorAll('[required]').forEach(f => f.required = false);"
                  "document.querySelector('#email').type = 'text'")
    allow_trouble(page, r"HTTP 422 for POST .*/tiktok-coins$", r"status of 422")
    page.get_by_role("button", name="Buy").click()
    expect(page.locator("#package-error")).to_have_text("Choose a package.")
    expect(page.locator("#email-error")).to_be_visible()
    axe_check(page, "Buy refused, errors shown")

    # The country's prices could not be loaded: the message and its retry button.
    allow_trouble(page, r"ERR_INTERNET_DISCONNECTED", r"htmx:(sendError|afterRequest)")
    page.route(re.compile(r"/tiktok-coins/options\?"), lambda route: route.abort(
        "internetdisconnected"))
    page.locator("#country").select_option("BR")
    expect(page.get_by_role("alert")).to_contain_text("No connection.")
    axe_check(page, "no connection")
    page.unroute(re.compile(r"/tiktok-coins/options\?"))

    # The order page with a QR code to scan (Pix, in Brazil).
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    package(page, 70).check()
    page.get_by_role("radio", name="Pix").check()
    page.locator("#email").fill("")
    page.get_by_role("button", name="Buy").click()
    expect(page).to_have_url(ORDER_URL)
    expect(page.locator("figure.qr svg")).to_be_visible()
    axe_check(page, "order page, QR code")

    # The order page with a Pay link, the sandbox's checkout, the delivered order.
    open_shop(page, live_server)
    page.locator("#account").fill("@maria.santos")
    expect(check).to_contain_text("Maria Santos")
    choose_sandbox_and_package(page, 70)
    page.get_by_role("button", name="Buy").click()
    expect(page).to_have_url(ORDER_URL)
    expect(page.get_by_role("link", name=re.compile(r"^Pay "))).to_be_visible()
    axe_check(page, "order page, Pay link")
    page.get_by_role("link", name=re.compile(r"^Pay ")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sandbox checkout")
    axe_check(page, "sandbox checkout")
    page.go_back()
    pay_in_sandbox(page, "Approve")
    expect(page.locator("#live").get_by_role("heading")).to_have_text("Delivered",
                                                                      timeout=SETTLE_MS)
    axe_check(page, "delivered order")

    allow_trouble(page, r"HTTP 404 for GET .*/no-such-page$", r"status of 404")
    page.goto(live_server.url + "/no-such-page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    axe_check(page, "404 page")

    page.goto(live_server.url + "/account/sign-in")
    axe_check(page, "sign-in page")
