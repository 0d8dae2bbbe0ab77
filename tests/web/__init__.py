"""Web-layer tests (Flask test client). Small helpers the modules here share."""
from __future__ import annotations

import html
import re

HX = {"HX-Request": "true"}

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def body(response) -> str:
    """The response's HTML, entities decoded (so "doesn't" reads as typed)."""
    return html.unescape(response.get_data(as_text=True))


def visible(response_or_html) -> str:
    """Roughly the text a buyer reads: tags dropped, entities decoded, spaces collapsed."""
    text = (response_or_html if isinstance(response_or_html, str)
            else response_or_html.get_data(as_text=True))
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def is_full_page(text: str) -> bool:
    return "<html" in text.lower()
