"""Encrypting codes at rest (Fernet) and fingerprinting them (HMAC-SHA256).

Settings: `key` (one Fernet key) or `keys` (a list, or a comma-separated
string; the first encrypts, the others still decrypt: key rotation). Each
key's fingerprint key is HKDF-SHA256 of the Fernet key's 32 bytes with a fixed
label, so a fingerprint reveals nothing and needs no second secret.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FINGERPRINT_LABEL = b"topup vouchers: code fingerprint v1"
_IGNORED = re.compile(r"[\s\-]+")


class BadKey(ValueError):
    """A setting that is not a usable Fernet key (the message never holds the key)."""


def configured_keys(settings: dict) -> list[str]:
    """The Fernet keys from settings, first one first; [] when none is set."""
    keys = settings.get("keys") or ([settings["key"]] if settings.get("key") else [])
    if isinstance(keys, str):
        keys = keys.split(",")
    resolved = []
    for key in keys:
        if isinstance(key, dict) and set(key) == {"$env"}:  # lists are not resolved by core
            if key["$env"] not in os.environ:
                raise BadKey(f"setting keys needs environment variable {key['$env']}")
            key = os.environ[key["$env"]]
        if not isinstance(key, str):
            raise BadKey("setting keys must hold Fernet keys (strings)")
        if key.strip():
            resolved.append(key.strip())
    return resolved


def normalise(code: str) -> str:
    """What makes two codes "the same": case, spaces and dashes do not count."""
    return _IGNORED.sub("", unicodedata.normalize("NFKC", code)).upper()


class Vault:
    """Encrypts with the first key, decrypts with any, fingerprints under each."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise BadKey("no Fernet key")
        raw = []
        for position, key in enumerate(keys, 1):
            try:
                decoded = base64.urlsafe_b64decode(key.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                decoded = b""
            if len(decoded) != 32:
                raise BadKey(f"voucher key {position} is not a Fernet key (32 url-safe "
                                "base64-encoded bytes)")
            raw.append(decoded)
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._hmac_keys = [HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                info=FINGERPRINT_LABEL).derive(secret) for secret in raw]

    def encrypt(self, code: str) -> str:
        return self._fernet.encrypt(code.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Raises InvalidToken when no configured key opens it (a key removed too early)."""
        return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")

    def rotate(self, ciphertext: str) -> str:
        """The same code, encrypted under the first key."""
        return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")

    def fingerprint(self, code: str) -> str:
        """The fingerprint stored with a code: under the first key."""
        return self.fingerprints(code)[0]

    def fingerprints(self, code: str) -> list[str]:
        """Under every key, first first: a code imported before a rotation is
        still recognised as a duplicate until `topup vouchers rotate` ran."""
        message = normalise(code).encode("utf-8")
        return [hmac.new(key, message, hashlib.sha256).hexdigest() for key in self._hmac_keys]


__all__ = ["InvalidToken", "BadKey", "Vault", "configured_keys", "normalise"]
