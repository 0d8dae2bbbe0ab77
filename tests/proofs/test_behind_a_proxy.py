"""Behind a reverse proxy, as the README sets it up (nginx terminating TLS,
PROXY_FIX_X_FOR = 1): the real `topup serve` process must see the proxy's
X-Forwarded-Proto and X-Forwarded-For. Otherwise every request looks like
plain HTTP from the proxy itself: no HSTS, a language cookie without Secure,
http:// return URLs, no same-origin Referer check on forms — and one rate-limit
budget shared by every buyer, so the shop answers everyone 429 at the first
busy minute."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import place_order

TOPUP = Path(sys.executable).parent / "topup"


@pytest.fixture
def served(app, database_url, tmp_path):
    """`topup serve` on the test database, told one proxy stands in front."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")},
           "TOPUP_INSTANCE_PATH": str(tmp_path / "served"), "TOPUP_DATABASE_URL": database_url,
           "TOPUP_SECRET_KEY": "proxy-test", "TOPUP_DISABLED_PLUGINS": "[]",
           "TOPUP_PLUGINS": json.dumps({"sandbox_payment": {"webhook_secret": "whsec_proxy"}}),
           "TOPUP_PROXY_FIX_X_FOR": "1", "TOPUP_SESSION_COOKIE_SECURE": "true",
           "TOPUP_RATELIMIT_ENABLED": "true", "TOPUP_LOOKUP_RATE_LIMIT": "2 per minute"}
    process = subprocess.Popen([str(TOPUP), "serve", "--port", "0", "--no-workers"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    assert "serving on" in line, line
    port = int(line.rsplit(":", 1)[1].strip("/\n"))
    yield port
    process.kill()
    process.wait(10)
    process.stdout.close()


def through_proxy(port: int, path: str, client: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={
        "Host": "coins.example", "X-Forwarded-Proto": "https", "X-Forwarded-For": client,
        "HX-Request": "true"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_topup_serve_sees_the_proxys_scheme_and_each_buyers_address(served):
    page = through_proxy(served, "/tiktok-coins?lang=id", "203.0.113.7")
    assert page.status == 200
    assert page.getheader("Strict-Transport-Security"), "the TLS the proxy terminated is unseen"
    language = [c for c in page.headers.get_all("Set-Cookie") if c.startswith("lang=")]
    assert language and "Secure" in language[0]
    # Each buyer has their own lookup budget, not one shared through the proxy's address.
    asked = [through_proxy(served, f"/tiktok-coins/account?account=buyer{n}", "203.0.113.7").status
             for n in range(3)]
    assert asked == [200, 200, 429]
    other = through_proxy(served, "/tiktok-coins/account?account=someone", "203.0.113.8")
    assert other.status == 200


def test_the_status_poll_answered_before_flask_sees_the_proxys_scheme_too(served, client):
    """topup.web.polls sits inside the proxy fix: its 204 carries HSTS as pages do."""
    order = place_order(client)
    poll = through_proxy(served, f"/orders/{order.public_id}/live?seen=awaiting_payment",
                         "203.0.113.9")
    assert poll.status == 204
    assert poll.getheader("Strict-Transport-Security") == "max-age=31536000"
