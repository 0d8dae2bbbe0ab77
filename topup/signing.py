"""Signed notifications, Stripe's scheme, for plugins that receive or send them:

    <Header>: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the raw body, compares in constant time,
and refuses timestamps more than TOLERANCE seconds from its clock. Several v1
values may be sent (secret rotation); one matching is enough.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time

TOLERANCE = 300


class SignatureError(ValueError):
    pass


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str | None, now: float | None = None,
           header_name: str = "signature") -> None:
    if not header:
        raise SignatureError(f"missing {header_name} header")
    parts = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    raw_timestamp = parts.get("t", [""])[0]
    if not re.fullmatch(r"[0-9]{1,12}", raw_timestamp):
        raise SignatureError("signature has no valid timestamp")
    timestamp = int(raw_timestamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = sign(secret, body, timestamp).split("v1=", 1)[1].encode()
    candidates = [value.encode("utf-8", "replace") for value in parts.get("v1", [])]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
