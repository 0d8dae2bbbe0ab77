"""Countries the shop sells in: each sets the currency buyers pay in."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    name: object  # lazy translatable string
    currency: str  # ISO 4217
    languages: tuple[str, ...]  # language subtags whose speakers most likely shop here


COUNTRIES: dict[str, Country] = {c.code: c for c in (
    Country("US", _l("United States"), "USD", ("en",)),
    Country("ID", _l("Indonesia"), "IDR", ("id", "jv", "su")),
    Country("PH", _l("Philippines"), "PHP", ("fil", "tl", "ceb")),
    Country("BR", _l("Brazil"), "BRL", ("pt",)),
    Country("TH", _l("Thailand"), "THB", ("th",)),
    Country("IN", _l("India"), "INR", ("hi", "bn", "ta", "te", "mr")),
    Country("VN", _l("Vietnam"), "VND", ("vi",)),
    Country("MX", _l("Mexico"), "MXN", ("es",)),
    # Euro area (SEPA): after the others, so "es" still means Mexico and "pt" Brazil
    # unless the browser names the region (es-ES, pt-PT).
    Country("DE", _l("Germany"), "EUR", ("de",)),
    Country("FR", _l("France"), "EUR", ("fr",)),
    Country("ES", _l("Spain"), "EUR", ("es", "ca", "gl", "eu")),
    Country("IT", _l("Italy"), "EUR", ("it",)),
    Country("NL", _l("Netherlands"), "EUR", ("nl",)),
    Country("BE", _l("Belgium"), "EUR", ()),
    Country("AT", _l("Austria"), "EUR", ()),
    Country("PT", _l("Portugal"), "EUR", ()),
    Country("IE", _l("Ireland"), "EUR", ("ga",)),
    Country("FI", _l("Finland"), "EUR", ("fi",)),
)}
DEFAULT_COUNTRY = "US"


def country_from_accept_language(accept_languages) -> str:
    """Best country for an Accept-Language header (werkzeug LanguageAccept).

    A region tag wins ("en-PH" -> PH); otherwise a language spoken mostly in one
    of our countries ("id" -> ID); otherwise the default.
    """
    for tag, _quality in accept_languages:
        parts = tag.replace("_", "-").split("-")
        for part in parts[1:]:
            if part.upper() in COUNTRIES:
                return part.upper()
        language = parts[0].lower()
        for country in COUNTRIES.values():
            if language in country.languages and language != "en":
                return country.code
    return DEFAULT_COUNTRY
