"""Which country a buyer most likely shops from, by their browser's languages."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from topup.regions import country_from_accept_language


def country(header: str) -> str:
    return country_from_accept_language(parse_accept_header(header, LanguageAccept))


@pytest.mark.parametrize("header, expected", [
    ("id-ID", "ID"), ("id", "ID"), ("jv", "ID"), ("id-ID,id;q=0.9,en-US;q=0.8", "ID"),
    ("pt-BR", "BR"), ("pt", "BR"), ("pt-BR,pt;q=0.9,en;q=0.8", "BR"),
    ("en-PH", "PH"), ("fil", "PH"), ("tl-PH", "PH"), ("en_PH", "PH"),
    ("th-TH", "TH"), ("th", "TH"),
    ("hi-IN", "IN"), ("en-IN", "IN"), ("ta", "IN"),
    ("vi-VN", "VN"), ("vi", "VN"),
    ("es-MX", "MX"), ("es-mx", "MX"), ("es", "MX"), ("es-419", "MX"),
    ("en-US", "US"), ("en", "US"), ("en-GB", "US"),
    ("", "US"), ("*", "US"), ("de-DE,fr;q=0.8", "DE"), ("zh-Hans-CN", "US"),
    ("es-ES", "ES"), ("pt-PT", "PT"), ("fr-BE", "BE"), ("sv-SE", "US"),
])
def test_country_from_accept_language(header, expected):
    assert country(header) == expected


@pytest.mark.parametrize("header, expected", [
    ("en-US,id-ID;q=0.9", "US"),  # the first choice wins
    ("en-US;q=0.5,id-ID", "ID"),  # by quality, not by position
    ("sv-SE,vi;q=0.5", "VN"),  # a language we don't sell in is skipped
    ("en-GB,th;q=0.8", "TH"),  # plain English says nothing: a later choice decides
    ("de-CH,de;q=0.9,pt-BR;q=0.5", "DE"),  # a region we don't sell in, then its language
    ("ja-JP,pt-BR;q=0.5", "BR"),
])
def test_the_best_ranked_useful_language_decides(header, expected):
    assert country(header) == expected


def test_the_region_beats_the_language():
    assert country("es-US") == "US"
    assert country("en-MX") == "MX"
    assert country("pt-PH") == "PH"
