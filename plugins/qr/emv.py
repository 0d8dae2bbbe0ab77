"""EMV Merchant-Presented QR (EMVCo QRCPS-MPM): the TLV format Pix, PromptPay
and QRIS share.

A payload is a run of data objects, each a 2-digit tag, a 2-digit length and
the value. Tag 00 (payload format indicator, "01") comes first; tag 63 (CRC)
comes last: 4 uppercase hex digits of CRC-16/CCITT-FALSE (poly 0x1021, init
0xFFFF) computed over everything before it *including* its own "6304".
EMVCo leaves the order of the other root objects free; each scheme's
reference implementation has its habits, which the builders here follow.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from topup.money import Money

PAYLOAD_FORMAT = ("00", "01")
STATIC, DYNAMIC = "11", "12"  # tag 01, point of initiation method
CRC_TAG = "63"

# ISO 4217 numeric codes (tag 53) of the currencies these schemes use.
NUMERIC_CURRENCY = {
    "BRL": "986", "THB": "764", "IDR": "360", "VND": "704", "INR": "356", "PHP": "608",
    "MYR": "458", "SGD": "702", "KHR": "116", "LAK": "418", "MXN": "484", "USD": "840",
    "EUR": "978",
}

_TAG = re.compile(r"\d\d")


class EMVError(ValueError):
    """A payload that is not well-formed EMV MPM (or whose CRC is wrong)."""


def crc16(data: str | bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def tlv(tag: str, value: str) -> str:
    """One data object. The length counts characters (all our values are ASCII)."""
    if not _TAG.fullmatch(tag):
        raise EMVError(f"tag must be two digits, got {tag!r}")
    if not 0 < len(value) <= 99:
        raise EMVError(f"tag {tag}: value length {len(value)} is not within 1..99")
    return f"{tag}{len(value):02d}{value}"


def encode(items) -> str:
    """Data objects (tag, value) in the order given; a nested template is a list of pairs."""
    return "".join(tlv(tag, encode(value) if isinstance(value, list) else value)
                   for tag, value in items)


def with_crc(body: str) -> str:
    """Append tag 63 with the CRC of body + "6304"."""
    body += CRC_TAG + "04"
    return body + f"{crc16(body):04X}"


def build(items) -> str:
    """A complete payload: tag 00 first, then items (without 00 and 63), then the CRC."""
    items = list(items)
    if any(tag in ("00", CRC_TAG) for tag, _ in items):
        raise EMVError("tags 00 and 63 are added by build()")
    return with_crc(encode([PAYLOAD_FORMAT, *items]))


def parse(payload: str) -> list[tuple[str, str]]:
    """Split a run of data objects into (tag, value) pairs, in order. No CRC check."""
    items, i = [], 0
    while i < len(payload):
        head = payload[i:i + 4]
        if len(head) < 4 or not head.isdigit():
            raise EMVError(f"malformed data object at position {i}")
        length = int(head[2:])
        value = payload[i + 4:i + 4 + length]
        if len(value) != length:
            raise EMVError(f"tag {head[:2]} at position {i} runs past the end")
        items.append((head[:2], value))
        i += 4 + length
    return items


def crc_ok(payload: str) -> bool:
    """Whether payload ends with a tag 63 holding the right CRC."""
    if len(payload) < 8 or payload[-8:-4] != CRC_TAG + "04":
        return False
    return payload[-4:].upper() == f"{crc16(payload[:-4]):04X}"


def parse_checked(payload: str) -> list[tuple[str, str]]:
    """Parse a complete payload: 00 = "01" first, 63 last with a valid CRC, no repeated tag."""
    payload = payload.strip()
    items = parse(payload)
    if not items or items[0] != PAYLOAD_FORMAT:
        raise EMVError("a payload starts with tag 00 = 01")
    if items[-1][0] != CRC_TAG or not crc_ok(payload):
        raise EMVError("the CRC (tag 63) is missing or wrong")
    tags = [tag for tag, _ in items]
    if len(set(tags)) != len(tags):
        raise EMVError("a tag appears twice")
    return items


def format_amount(money: Money, decimals: int) -> str:
    """Tag 54: the amount in major units with exactly `decimals` decimals ("15000",
    "4.22"). Refuses an amount it cannot write exactly, or longer than 13 characters."""
    value = money.to_decimal()
    text = f"{value.quantize(Decimal(1).scaleb(-decimals)):f}"
    if Decimal(text) != value:
        raise ValueError(f"{money} cannot be written with {decimals} decimals")
    if money.amount <= 0 or len(text) > 13:
        raise ValueError(f"{money} is not a payable QR amount")
    return text


def ascii_text(text: str, limit: int) -> str:
    """Names and cities: accents dropped ("São" -> "Sao"), printable ASCII only, cut to limit."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = "".join(c for c in plain if " " <= c <= "~")
    return " ".join(plain.split())[:limit].strip()
