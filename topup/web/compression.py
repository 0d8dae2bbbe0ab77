"""Compression, since waitress has none: brotli when the browser accepts it,
else gzip. Pages are compressed per response at a cheap level that still
keeps them small (the 14 KB first-window budget is about bytes, not CPU);
the landing page, the one every visit starts with, is compressed once
(GzipAround); static files are compressed once at the highest level and kept
in memory (see topup.web.assets)."""
from __future__ import annotations

import functools
import gzip
import struct
import zlib

import brotli
from flask import request

COMPRESSIBLE = frozenset({"text/html", "text/css", "text/javascript", "application/javascript",
                          "image/svg+xml", "application/json", "text/plain", "text/csv"})
MIN_SIZE = 256  # smaller bodies gain nothing after headers
DYNAMIC = {"br": 4, "gzip": 6}
STATIC = {"br": 11, "gzip": 9}


def accepted(accept_encoding: str | None) -> frozenset[str]:
    """The encodings an Accept-Encoding header accepts (q > 0), lower-cased.
    A browser's header is read once (browsers send a handful), as
    topup.web.read_accept_language is; a long one, every time, uncached."""
    accept_encoding = accept_encoding or ""
    return (_accepted_cached if len(accept_encoding) <= 200 else _accepted)(accept_encoding)


def _accepted(accept_encoding: str) -> frozenset[str]:
    names = set()
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if params.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        names.add(name.strip().lower())
    return frozenset(names)


_accepted_cached = functools.lru_cache(maxsize=256)(_accepted)


def preferred(accept_encoding: str | None) -> str | None:
    """"br" or "gzip" if the client accepts it (q > 0), br first."""
    names = accepted(accept_encoding)
    return "br" if "br" in names else "gzip" if "gzip" in names else None


def compress(data: bytes, encoding: str, level: int) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=level)
    return gzip.compress(data, compresslevel=level, mtime=0)


def compress_response(response) -> None:
    """Compress a buffered, compressible answer in place (for the after-request
    hook, which also says Vary: Accept-Encoding)."""
    encoding = preferred(request.environ.get("HTTP_ACCEPT_ENCODING"))
    if (encoding is None or response.direct_passthrough or response.is_streamed
            or "Content-Encoding" in response.headers
            or response.mimetype not in COMPRESSIBLE):
        return
    data = response.get_data()
    if len(data) < MIN_SIZE:
        return
    response.set_data(compress(data, encoding, DYNAMIC[encoding]))
    response.headers["Content-Encoding"] = encoding


GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF))  # deflate, no name, no time
CRC_CHUNK = 4096  # zlib lets go of the GIL from 5 KB: smaller, a thread keeps it


class GzipAround:
    """A gzip body compressed once around slots that change per response (the
    landing page's tokens), then filled in for each at almost no cost.

    gzip allows the join: each fixed part is deflated apart, ending on a byte
    boundary and referring to nothing before it (a full flush); each slot's
    value goes between them as a stored block; only the CRC is computed per
    response. No compressor runs per response, and no zlib call that lets go
    of the GIL: with waitress's threads, getting it back costs time too."""

    def __init__(self, parts: list[bytes]):
        last = len(parts) - 1
        self.deflated = [_deflate(part, final=i == last) for i, part in enumerate(parts)]
        self.first_crc, self.rest = zlib.crc32(parts[0]), parts[1:]
        self.size = sum(map(len, parts))

    def fill(self, *values: bytes) -> bytes:
        """The gzip body with values in the slots, one per slot."""
        if len(values) != len(self.rest):
            raise ValueError(f"{len(self.rest)} slots, {len(values)} values")
        body, crc = [GZIP_HEADER, self.deflated[0]], self.first_crc
        for value, part, deflated in zip(values, self.rest, self.deflated[1:]):
            body += (_stored(value), deflated)
            crc = _crc(part, _crc(value, crc))
        size = self.size + sum(map(len, values))
        body.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return b"".join(body)


def _deflate(data: bytes, *, final: bool) -> bytes:
    compressor = zlib.compressobj(STATIC["gzip"], zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _stored(data: bytes) -> bytes:
    """data as stored (uncompressed), non-final deflate blocks of at most 64 KB."""
    blocks = []
    for start in range(0, len(data), 0xFFFF):
        chunk = data[start:start + 0xFFFF]
        blocks += (b"\x00", struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF), chunk)
    return b"".join(blocks)


def _crc(data: bytes, crc: int) -> int:
    for start in range(0, len(data), CRC_CHUNK):
        crc = zlib.crc32(data[start:start + CRC_CHUNK], crc)
    return crc
