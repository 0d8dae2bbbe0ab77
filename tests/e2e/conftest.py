"""Browser fixtures: Debian's Chromium driven by Playwright's sync API.

One browser per session (launching is the slow part); each test gets its own
context (cookies, storage, JavaScript on or off) on a phone-sized viewport.
pytest-playwright is not used: these few fixtures are all the suite needs.

`browser_page` is the JavaScript-enabled page; `no_js_page` the same phone
with JavaScript turned off. Both collect what the browser complains about
(page errors, console errors such as CSP violations, 4xx/5xx answers) and fail the
test at teardown if there was any.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TOPUP_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True, "locale": "en-US", "timezone_id": "UTC"}
TIMEOUT_MS = 10_000
SCREENSHOTS = Path(os.environ.get("TOPUP_E2E_SCREENSHOTS", "/tmp/topup-e2e"))


@pytest.fixture(scope="package")
def browser():
    """One browser for tests/e2e, closed when they are done: Playwright's sync API
    allows one running instance per thread, and other tests start their own."""
    # Missing pieces fail, never skip: `make test` installs both.
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}: run `make browser`"
    from playwright import sync_api
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so page fixtures know a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class BrowserTrouble:
    """What went wrong inside the browser while a test ran."""

    def __init__(self, page):
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _response(self, response):
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status} for {response.request.method} "
                                 f"{response.url}")


def _page(browser, request, **options):
    context = browser.new_context(**PHONE, **options)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        trouble = BrowserTrouble(page)
        yield page
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
        assert not trouble.problems, "the browser reported problems:\n" + "\n".join(
            trouble.problems)
    finally:
        context.close()


@pytest.fixture
def browser_page(browser, request):
    yield from _page(browser, request)


@pytest.fixture
def no_js_page(browser, request):
    yield from _page(browser, request, java_script_enabled=False)
