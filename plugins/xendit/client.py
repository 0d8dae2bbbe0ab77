"""A small client for Xendit's e-wallet charges API, over urllib.

Authentication is HTTP Basic with the secret API key as the username and an
empty password. The key only ever travels in the Authorization header: it is
never part of a URL, an exception message or a log line.

Amounts: Xendit takes and returns major units ("amount": 25000 is Rp 25,000),
while Money holds ISO minor units (IDR has 2 digits in ISO/CLDR). Conversion is
exact; rupiah and dong must be whole.
"""
from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

from topup.money import Money

DEFAULT_API_BASE = "https://api.xendit.co"
WHOLE_UNIT_CURRENCIES = frozenset({"IDR", "VND"})  # Xendit amounts in whole rupiah / dong
_AMOUNT = "__xendit_amount__"


class XenditError(Exception):
    """Xendit answered with an error (status, error_code)."""

    def __init__(self, status: int, code: str, message: str = ""):
        self.status, self.code = status, code
        super().__init__(f"HTTP {status} {code}" + (f": {message[:200]}" if message else ""))


class XenditUnavailable(XenditError):
    """No usable answer: a network error, a timeout, or a 5xx."""


def api_amount(money: Money) -> Decimal:
    """Money -> Xendit's major-unit amount, exactly; refuses fractions of a rupiah/dong."""
    value = money.to_decimal()
    if money.currency in WHOLE_UNIT_CURRENCIES and value != value.to_integral_value():
        raise ValueError(f"Xendit takes whole {money.currency}, not {value}")
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def money_from_api(value, currency: str) -> Money:
    """Xendit's major-unit amount (parsed as Decimal or int) -> Money, exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"not an amount: {value!r}")
    return Money.from_decimal(Decimal(value), currency)


def dumps(body: dict) -> bytes:
    """JSON with body["amount"] (a Decimal) written as an exact number, never a float."""
    amount = body.get("amount")
    if not isinstance(amount, Decimal):
        return json.dumps(body).encode()
    text = json.dumps({**body, "amount": _AMOUNT})
    return text.replace(json.dumps(_AMOUNT), format(amount, "f"), 1).encode()


class XenditClient:
    def __init__(self, secret_key: str, api_base: str = DEFAULT_API_BASE, timeout: float = 15.0):
        scheme = urllib.parse.urlsplit(api_base).scheme
        if scheme not in ("https", "http"):
            raise ValueError("xendit api_base must be an http(s) URL")
        self._auth = "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode("ascii")
        self.api_base = api_base.rstrip("/")
        self.timeout = float(timeout)

    def __repr__(self) -> str:  # never the key
        return f"XenditClient({self.api_base!r})"

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> dict:
        data = dumps(body) if body is not None else None
        request = urllib.request.Request(self.api_base + path, data=data, method=method, headers={
            "Authorization": self._auth, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
            **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            try:
                answer = json.loads(raw)
                code, message = str(answer.get("error_code", "")), str(answer.get("message", ""))
            except (ValueError, AttributeError):
                code, message = "", ""
            cls = XenditUnavailable if error.code >= 500 else XenditError
            raise cls(error.code, code or "HTTP_ERROR", message) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise XenditUnavailable(0, "UNREACHABLE", type(reason).__name__) from None
        try:
            answer = json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise XenditUnavailable(200, "BAD_RESPONSE", "not JSON") from None
        if not isinstance(answer, dict):
            raise XenditUnavailable(200, "BAD_RESPONSE", "not a JSON object")
        return answer

    # --- e-wallet charges -------------------------------------------------

    def create_charge(self, body: dict) -> dict:
        return self.request("POST", "/ewallets/charges", body)

    def get_charge(self, charge_id: str) -> dict:
        return self.request("GET", "/ewallets/charges/" + urllib.parse.quote(charge_id, safe=""))

    def refund_charge(self, charge_id: str, body: dict) -> dict:
        return self.request("POST", "/ewallets/charges/"
                            + urllib.parse.quote(charge_id, safe="") + "/refunds", body)
