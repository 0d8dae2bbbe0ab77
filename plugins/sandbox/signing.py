"""The sandbox's webhook signature: topup.signing's scheme under its own header."""
from __future__ import annotations

from topup.signing import TOLERANCE, SignatureError, sign
from topup.signing import verify as _verify

HEADER = "Sandbox-Signature"

__all__ = ["HEADER", "TOLERANCE", "SignatureError", "sign", "verify"]


def verify(secret: str, body: bytes, header: str | None, now: float | None = None) -> None:
    _verify(secret, body, header, now, header_name=HEADER)
