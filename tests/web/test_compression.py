"""Compression without a proxy: pages brotli- or gzip-compressed per request,
static files compressed once, both only when the browser says it accepts it."""
from __future__ import annotations

import gzip
import re

import brotli
import pytest

from topup.web.compression import preferred


def static_url(client, name: str) -> str:
    page = client.get("/tiktok-coins").get_data(as_text=True)
    return re.search(rf'"(/static/{re.escape(name.rsplit(".", 1)[0])}\.[0-9a-f]{{10}}\.\w+)"', page).group(1)


@pytest.mark.parametrize("accept, encoding, decode", [
    ("gzip, deflate, br", "br", brotli.decompress),
    ("gzip", "gzip", gzip.decompress),
    ("br;q=0, gzip", "gzip", gzip.decompress),
])
def test_pages_are_compressed_as_the_browser_accepts(client, accept, encoding, decode):
    plain = client.get("/tiktok-coins").get_data()
    packed = client.get("/tiktok-coins", headers={"Accept-Encoding": accept})
    assert packed.headers["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["Vary"]
    body = decode(packed.get_data())
    # The same page (only the per-visit tokens differ) in a fraction of the bytes.
    assert re.sub(rb'value="[^"]{20,}"', b"", body) == re.sub(rb'value="[^"]{20,}"', b"", plain)
    assert len(packed.get_data()) < len(plain) / 2.5


def test_no_compression_unless_asked_and_none_for_tiny_answers(client):
    assert "Content-Encoding" not in client.get("/tiktok-coins").headers
    refused = client.get("/tiktok-coins", headers={"Accept-Encoding": "identity, br;q=0"})
    assert "Content-Encoding" not in refused.headers
    tiny = client.get("/tiktok-coins/account?account=maria",
                      headers={"HX-Request": "true", "Accept-Encoding": "br"})
    assert len(tiny.get_data()) < 256 and "Content-Encoding" not in tiny.headers


@pytest.mark.parametrize("name", ["topup.css", "htmx.min.js", "topup.js", "icon.svg"])
def test_static_files_are_precompressed_and_immutable(client, name):
    url = static_url(client, name)
    plain = client.get(url)
    packed = client.get(url, headers={"Accept-Encoding": "br"})
    assert packed.headers["Content-Encoding"] == "br"
    assert brotli.decompress(packed.get_data()) == plain.get_data()
    assert "immutable" in packed.headers["Cache-Control"] and "max-age=31536000" in packed.headers["Cache-Control"]
    assert client.get(url, headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] == "gzip"


def test_htmx_compressed_is_small(client):
    packed = client.get(static_url(client, "htmx.min.js"), headers={"Accept-Encoding": "br"})
    assert len(packed.get_data()) < 20_000


@pytest.mark.parametrize("header, chosen", [
    (None, None), ("", None), ("deflate", None), ("BR", "br"), ("gzip;q=0.5, br;q=1", "br"),
    ("br;q=0.0, gzip;q=0", None), ("*", None),
])
def test_encoding_negotiation(header, chosen):
    assert preferred(header) == chosen


def test_vary_is_one_header_naming_each_dependency_once(client):
    """The view's Vary (HX-Request) and what every answer depends on, merged."""
    partial = client.get("/tiktok-coins/account?account=maria.s", headers={"HX-Request": "true"})
    assert partial.headers.getlist("Vary") == ["HX-Request, Accept-Encoding, Accept-Language, Cookie"]
    script = client.get(static_url(client, "topup.js"))
    assert script.headers.getlist("Vary") == ["Accept-Encoding"]
