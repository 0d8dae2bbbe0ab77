"""A small client for Digiflazz's buyer transaction API (POST /v1/transaction), over urllib.

Every request is signed with sign = md5(username + api_key + ref_id) in the JSON
body; the key itself never leaves this object (not in a URL, an exception
message or a log line). The answer is the object under "data".

Two ways to have no answer, because they call for different next steps:
NotSent (Digiflazz cannot have processed it: refused connection, unknown host,
429, an HTTP error without a Digiflazz answer) and NoAnswer (it may have been
processed: a timeout or a dropped connection after sending, a 5xx, a body that
is not Digiflazz's JSON). After NoAnswer only a status check (the same request
again) can tell what happened.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

DEFAULT_BASE_URL = "https://api.digiflazz.com/v1"


class DigiflazzUnavailable(Exception):
    """No Digiflazz answer to act on; the message says why (never a secret)."""


class NotSent(DigiflazzUnavailable):
    """Digiflazz did not process the request: sending it again is a first try."""


class NoAnswer(DigiflazzUnavailable):
    """The request may have been processed: only a status check can tell."""


class DigiflazzClient:
    def __init__(self, username: str, api_key: str, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 30.0):
        if urllib.parse.urlsplit(base_url).scheme not in ("https", "http"):
            raise ValueError("digiflazz base_url must be an http(s) URL")
        if not 0 < timeout <= 100:
            raise ValueError("digiflazz timeout_seconds must be between 0 and 100")
        self.username = username
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)

    def __repr__(self) -> str:  # never the key
        return f"DigiflazzClient({self.base_url!r}, username={self.username!r})"

    def sign(self, ref_id: str) -> str:
        return hashlib.md5((self.username + self._api_key + ref_id).encode()).hexdigest()

    def transaction(self, *, buyer_sku_code: str, customer_no: str, ref_id: str,
                    testing: bool = False, cb_url: str | None = None) -> dict:
        """Buy (or, for a ref_id Digiflazz already holds, ask about) one top-up.
        Returns the answer's "data" object."""
        body = {"username": self.username, "buyer_sku_code": buyer_sku_code,
                "customer_no": customer_no, "ref_id": ref_id, "sign": self.sign(ref_id)}
        if testing:
            body["testing"] = True
        if "." in customer_no:  # documented: customer_no may hold dots only with allow_dot
            body["allow_dot"] = True
        if cb_url:
            body["cb_url"] = cb_url
        return self._post("/transaction", body)

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "User-Agent": "topup-digiflazz"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            if error.code == 429:
                raise NotSent("HTTP 429 (too many requests)") from None
            if error.code >= 500:
                raise NoAnswer(f"HTTP {error.code}") from None
            try:  # Digiflazz may put its answer (an rc) in a 4xx body
                return _data(raw)
            except NoAnswer:
                raise NotSent(f"HTTP {error.code} without a Digiflazz answer") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
                raise NotSent(f"unreachable ({type(reason).__name__})") from None
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise NoAnswer(f"no answer within {self.timeout:g} s") from None
            raise NoAnswer(f"connection failed ({type(reason).__name__})") from None
        except (TimeoutError, socket.timeout):
            raise NoAnswer(f"no answer within {self.timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            raise NoAnswer(f"connection failed ({type(error).__name__})") from None
        return _data(raw)


def _data(raw: bytes) -> dict:
    """The "data" object of a Digiflazz answer (floats parsed as Decimal, never float)."""
    try:
        answer = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise NoAnswer("malformed answer: not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        raise NoAnswer("malformed answer: no data object")
    return answer["data"]
