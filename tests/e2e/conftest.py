"""Browser fixtures: Debian's Chromium driven by Playwright's sync API.

One browser per session (launching is the slow part); each test gets its own
context (cookies, storage, JavaScript on or off) on a phone-sized viewport.
pytest-playwright is not used: these few fixtures are all the suite needs.

`browser_page` is the JavaScript-enabled page; `no_js_page` the same phone
with JavaScript turned off; `open_page(**context_options)` opens others (another
viewport, language, JavaScript off). All collect what the browser complains about
(page errors, console errors such as CSP violations, 4xx/5xx answers) and fail the
test at teardown if there was any; `allow_trouble(page, pattern)` lets a test
that provokes one (a dropped connection, a 404 page) say which it expects.

`snap(page, name)` keeps a screenshot of a step in TOPUP_E2E_SCREENSHOTS (a
failed test's last page is kept there too); `axe_check(page, step)` runs
axe-core (npm, tests/e2e/node_modules) on the page.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import weakref
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
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


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
        self.expected: list[re.Pattern] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message):
        if message.type == "error":
            self._add(f"console error: {message.text}")

    def _response(self, response):
        if response.status >= 400:
            self._add(f"HTTP {response.status} for {response.request.method} {response.url}")

    def _add(self, problem: str):
        if not any(pattern.search(problem) for pattern in self.expected):
            self.problems.append(problem)


_TROUBLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def allow_trouble(page, *patterns: str) -> None:
    """Problems (regular expressions) this test provokes on purpose, from now on."""
    _TROUBLE[page].expected.extend(re.compile(pattern) for pattern in patterns)


def _page(browser, request, **options):
    context = browser.new_context(**{**PHONE, **options})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        trouble = _TROUBLE[page] = BrowserTrouble(page)
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


@pytest.fixture
def open_page(browser, request):
    """open_page(**context_options): a page on another phone (viewport, locale,
    java_script_enabled...), checked like browser_page; closed after the test."""
    opened = []

    def open_(**options):
        pages = _page(browser, request, **options)
        opened.append(pages)
        return next(pages)

    yield open_
    complaints = []
    for pages in opened:  # each closed, even when another one complained
        try:
            next(pages, None)
        except AssertionError as complaint:
            complaints.append(str(complaint))
    assert not complaints, "\n".join(complaints)


def snap(page, name: str) -> Path:
    """A screenshot of this step of the flow, kept as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def with_axe(page) -> None:
    """Make axe-core available in every document this page loads. An init
    script, not a <script> tag: the shop's CSP refuses inline scripts."""
    assert AXE.is_file(), f"no {AXE}: run `make install-test`"
    page.add_init_script(path=str(AXE))


SERIOUS = ("serious", "critical")


def axe_check(page, step: str) -> list[dict]:
    """axe-core's violations on the page as it is now (with_axe first): fails on
    serious and critical ones, prints the others. Returns them all."""
    result = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return {passed: result.passes.length, violations: result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(" ") + "  " + n.failureSummary)}))};
    }""")
    violations = result["violations"]
    assert result["passed"] >= 10, f"axe checked next to nothing on {step}: {result}"
    minor = [v for v in violations if v["impact"] not in SERIOUS]
    for violation in minor:
        print(f"axe ({step}): {violation['impact']} {violation['id']}: {violation['help']} "
              f"{json.dumps(violation['nodes'][:3])}")
    serious = [v for v in violations if v["impact"] in SERIOUS]
    assert not serious, f"axe found serious problems on {step}:\n" + "\n".join(
        f"{v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"])
        for v in serious)
    return violations
