"""The buyer-facing UI in six languages: complete catalogues, how a language is
chosen, the switcher, numbers and money per locale, receipts and payment
instructions in the order's own language."""
from __future__ import annotations

import html as htmllib
import re
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlencode

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
try:
    from babel.messages.frontend import parse_mapping_cfg
except ImportError:  # Babel < 2.15
    from babel.messages.frontend import parse_mapping as parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from topup import ROOT
from topup.models import Order
from topup.web import SUPPORTED_LOCALES
from topup_plugins.qr.pix import Pix
from topup_plugins.receipts.compose import compose

from tests.conftest import buy, form_tokens, package_id, place_order
from tests.web import HX, body, visible

TRANSLATIONS = ROOT / "topup" / "translations"
LOCALES = ("id", "pt_BR", "es", "th", "vi")  # en is the source language
# Pages only the shop's operator sees; everything else a buyer may read.
OPERATOR_ONLY = ("templates/admin/*", "topup/web/admin/*", "templates/auth/*", "topup/web/auth.py")
PLURAL_FORMS = {"id": (1, "0"), "pt_BR": (2, "(n > 1)"), "es": (2, "(n != 1)"),
                "th": (1, "0"), "vi": (1, "0")}
# A %-conversion, named or not, and the literal %%.
CONVERSION = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa%])")

# One phrase per locale from the product page and from the order page.
PRODUCT_PHRASE = {"en": "Choose coins", "id": "Pilih jumlah coins",
                  "pt_BR": "Escolha a quantidade de coins", "es": "Elige la cantidad de coins",
                  "th": "เลือกจำนวน coins", "vi": "Chọn gói coins"}
ORDER_PHRASE = {"en": "Waiting for your payment", "id": "Menunggu pembayaran Anda",
                "pt_BR": "Aguardando seu pagamento", "es": "Esperando tu pago",
                "th": "รอการชำระเงินของคุณ", "vi": "Đang chờ bạn thanh toán"}
HTML_LANG = re.compile(r'<html lang="([^"]+)">')
NBSP = "\xa0"


# --- the catalogues -------------------------------------------------------------------


def _extracted() -> dict:
    """Every message in the sources, as `pybabel extract -F babel.cfg` finds them:
    {msgid (a tuple for plurals): set of files}."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    top = {"topup", "plugins", "templates"}

    def walk(path) -> bool:
        return Path(path).relative_to(ROOT).parts[0] in top

    messages: dict = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            ROOT, method_map, options_map, keywords=keywords, directory_filter=walk):
        messages.setdefault(message, set()).add(Path(filename).as_posix())
    return messages


@pytest.fixture(scope="module")
def extracted() -> dict:
    return _extracted()


@pytest.fixture(scope="module")
def buyer_messages(extracted) -> dict:
    return {msgid: files for msgid, files in extracted.items()
            if not all(any(fnmatch(f, p) for p in OPERATOR_ONLY) for f in files)}


def _catalog(locale: str):
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=locale)


def _named(text: str) -> list[str]:
    return sorted(name or kind for name, kind in CONVERSION.findall(text))


def test_supported_locales_each_have_a_catalogue():
    assert SUPPORTED_LOCALES[0] == "en" and set(SUPPORTED_LOCALES) == {"en", *LOCALES}
    for locale in LOCALES:
        assert (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").is_file(), locale
        assert (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo").is_file(), locale


def test_the_extraction_finds_buyer_strings_from_every_kind_of_source(buyer_messages):
    """A guard on the guard: the mapping reaches Python, lazy strings, page
    templates, plugin templates and the receipt e-mail."""
    found = {f for files in buyer_messages.values() for f in files}
    for source in ("topup/web/shop.py", "topup/accounts.py", "topup/regions.py", "topup/orders.py",
                   "templates/shop/product.html", "templates/orders/_live.html",
                   "plugins/qr/common.py", "plugins/receipts/compose.py",
                   "plugins/receipts/templates/receipts/mail.txt",
                   "plugins/receipts/templates/receipts/paid.html"):
        assert source in found, source
    assert "TikTok username" in buyer_messages  # lazy_gettext, imported as _l
    assert "Usernames are 2–24 letters, digits, _ or ." in buyer_messages


def test_messages_pot_is_up_to_date_with_the_sources(buyer_messages):
    with open(TRANSLATIONS / "messages.pot", "rb") as pot:
        template = {message.id for message in read_po(pot) if message.id}
    missing = sorted(str(msgid) for msgid in buyer_messages if msgid not in template)
    assert not missing, f"run the extract command in docs/translating.md; new: {missing}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_buyer_string_is_translated(locale, buyer_messages):
    catalog = _catalog(locale)
    problems = []
    for msgid, files in sorted(buyer_messages.items(), key=lambda item: str(item[0])):
        message = catalog.get(msgid)
        where = sorted(files)[0]
        if message is None:
            problems.append(f"missing ({where}): {msgid!r}")
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            problems.append(f"untranslated or fuzzy ({where}): {msgid!r}")
            continue
        if isinstance(msgid, tuple):
            assert len(strings) == catalog.num_plurals, msgid
        for string in strings:
            ids = msgid if isinstance(msgid, tuple) else (msgid,)
            if _named(string) != _named(ids[-1]):
                problems.append(f"placeholders differ: {msgid!r} -> {string!r}")
            if (set(string) - set(ids[-1])) & set("<>&"):  # templates trust _()'s text as HTML
                problems.append(f"markup in a translation: {msgid!r} -> {string!r}")
            names = {name for name, _ in CONVERSION.findall(string) if name}
            if names:
                string % dict.fromkeys(names, "x")  # a well-formed format string
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", LOCALES)
def test_plural_forms_are_the_languages_own(locale):
    catalog = _catalog(locale)
    assert (catalog.num_plurals, catalog.plural_expr) == PLURAL_FORMS[locale]


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogues_match_the_po_files(locale):
    """The .mo the app reads says what the .po says: no stale compile."""
    def key(value):
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)

    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo", "rb") as mo:
        compiled = {key(m.id): key(m.string) for m in read_mo(mo) if m.id}
    translated = {key(m.id): key(m.string) for m in _catalog(locale)
                  if m.id and not m.fuzzy and all(key(m.string))}
    stale = [msgid for msgid, strings in translated.items() if compiled.get(msgid) != strings]
    # anything else compiled is English standing in for a missing translation
    stale += [msgid for msgid, strings in compiled.items()
              if msgid not in translated and not set(strings) <= set(msgid)]
    assert not stale, f"run pybabel compile (docs/translating.md): {stale[:5]}"


# --- choosing the language ------------------------------------------------------------


def html_lang(response) -> str:
    return HTML_LANG.search(response.get_data(as_text=True)).group(1)


def lang_cookie(response) -> str | None:
    """The Set-Cookie header for the language, if the response sets it."""
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("lang=")]
    assert len(cookies) <= 1
    return cookies[0] if cookies else None


@pytest.mark.parametrize("header, locale", [
    ("id-ID,id;q=0.9,en;q=0.8", "id"),
    ("pt-BR,pt;q=0.9", "pt_BR"),
    ("pt-PT", "pt_BR"),  # the language matters, not the region
    ("pt-PT,en;q=0.8", "pt_BR"),  # even before a lesser exact match
    ("in-ID", "id"),  # Indonesian's old code
    ("zh-CN,*;q=0.5", "en"),
    ("es-MX,es;q=0.9", "es"),
    ("es-ES", "es"),
    ("th-TH", "th"),
    ("vi", "vi"),
    ("de-DE,de;q=0.9,vi;q=0.5", "vi"),  # the best one we have
    ("fr-FR,fr;q=0.9", "en"),
    ("en-US,en;q=0.9,id;q=0.8", "en"),
    (None, "en"),
])
def test_accept_language_picks_the_language(client, header, locale):
    response = client.get("/tiktok-coins", headers={"Accept-Language": header} if header else {})
    assert response.status_code == 200
    assert html_lang(response) == locale.replace("_", "-")
    assert PRODUCT_PHRASE[locale] in visible(response)
    assert lang_cookie(response) is None  # only the switcher's choice is remembered
    assert {"Accept-Language", "Cookie"} <= set(response.vary)


def test_the_switchers_choice_beats_the_browser_and_is_remembered(client):
    thai_browser = {"Accept-Language": "th-TH,th;q=0.9"}
    response = client.get("/tiktok-coins?lang=pt_BR", headers=thai_browser)
    assert html_lang(response) == "pt-BR" and PRODUCT_PHRASE["pt_BR"] in visible(response)
    cookie = lang_cookie(response)
    assert cookie.startswith("lang=pt_BR;")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert attributes["max-age"] == f"Max-Age={365 * 24 * 3600}"
    assert attributes["samesite"] == "SameSite=Lax" and attributes["path"] == "Path=/"
    assert "httponly" in attributes
    # later pages, without the parameter, stay in the chosen language
    later = client.get("/tiktok-coins", headers=thai_browser)
    assert html_lang(later) == "pt-BR" and lang_cookie(later) is None
    assert html_lang(client.get("/orders/nope", headers=thai_browser)) == "pt-BR"
    # and a new choice replaces it
    again = client.get("/tiktok-coins?lang=vi", headers=thai_browser)
    assert html_lang(again) == "vi" and lang_cookie(again).startswith("lang=vi;")
    assert html_lang(client.get("/tiktok-coins")) == "vi"


@pytest.mark.parametrize("value", ["pt-br", "PT_br", "pt-BR"])
def test_lang_is_read_leniently(client, value):
    response = client.get(f"/tiktok-coins?lang={value}")
    assert html_lang(response) == "pt-BR"
    assert lang_cookie(response).startswith("lang=pt_BR;")


@pytest.mark.parametrize("query", ["lang=xx", "lang=", "lang=en_US_POSIX", "lang=../../etc/passwd",
                                   "lang=%ff%fe", "lang=" + "e" * 5000, "lang[]=id",
                                   "lang=id&lang=th"])
def test_unknown_lang_values_are_ignored(client, query):
    response = client.get(f"/tiktok-coins?{query}", headers={"Accept-Language": "vi"})
    assert response.status_code == 200
    expected = "id" if query == "lang=id&lang=th" else "vi"  # the first of two; else the browser's
    assert html_lang(response) == expected
    if expected == "vi":
        assert lang_cookie(response) is None


def test_an_unknown_cookie_is_ignored(client):
    client.set_cookie("lang", "klingon")
    response = client.get("/tiktok-coins", headers={"Accept-Language": "es"})
    assert response.status_code == 200 and html_lang(response) == "es"
    client.set_cookie("lang", "th")
    assert html_lang(client.get("/tiktok-coins", headers={"Accept-Language": "es"})) == "th"


# --- each language, on the buyer's pages -------------------------------------------------


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_product_and_order_pages_render_in_each_language(client, locale):
    client.set_cookie("lang", locale)
    page = client.get("/tiktok-coins?country=US")
    assert page.status_code == 200 and html_lang(page) == locale.replace("_", "-")
    assert PRODUCT_PHRASE[locale] in visible(page)
    order = place_order(client, country="US")
    assert order.locale == locale  # recorded at Buy, for the receipts
    response = client.get(f"/orders/{order.public_id}")
    assert response.status_code == 200 and html_lang(response) == locale.replace("_", "-")
    text = visible(response)
    assert ORDER_PHRASE[locale] in text
    for rendered in (body(page), body(response)):
        assert "%(" not in rendered and ")s" not in visible(rendered)  # placeholders filled


@pytest.mark.parametrize("locale, country, price, quantity", [
    ("en", "BR", "R$5.17", "17,500"),
    ("pt_BR", "BR", f"R${NBSP}5,17", "17.500"),
    ("id", "ID", "Rp15.000", "17.500"),
    ("es", "MX", "$17.00", "17,500"),  # Mexico writes Spanish with its own digits: es_MX
    ("es", "ES", f"0,86{NBSP}€", "17.500"),
    ("th", "TH", "฿33.00", "17,500"),
    ("vi", "VN", f"24.000{NBSP}₫", "17.500"),
])
def test_money_and_coin_counts_are_written_the_buyers_way(client, locale, country, price,
                                                           quantity):
    client.set_cookie("lang", locale)
    options = re.search(r'<div id="options">.*?</fieldset>', body(client.get(
        f"/tiktok-coins?country={country}")), re.S).group(0)
    package = re.search(r"<b>([^<]+)</b> coins<br>([^<]+)</span>", options.split(
        f'value="{package_id(70)}"')[1])
    assert package.groups() == ("70", price)
    assert f"<b>{quantity}</b> coins" in options


def test_the_order_page_writes_money_as_the_orders_country_does(client):
    """Spanish, for an order from Mexico: Mexico's digits and peso sign (es_MX),
    also in the receipt's language recorded at Buy; the words stay Spanish."""
    client.set_cookie("lang", "es")
    order = place_order(client, country="MX")
    assert order.locale == "es"
    text = body(client.get(f"/orders/{order.public_id}"))
    assert "$17.00" in text and "17,00" not in text
    assert "Total" in text and '<html lang="es">' in text


def test_the_order_page_writes_the_total_in_the_buyers_language(client):
    client.set_cookie("lang", "pt_BR")
    order = place_order(client, country="BR", coins=700)
    text = body(client.get(f"/orders/{order.public_id}"))
    assert f"R${NBSP}51,59" in text and f"Pagar R${NBSP}51,59" in text
    client.set_cookie("lang", "en")  # the same order, read in English
    assert "Pay R$51.59" in body(client.get(f"/orders/{order.public_id}"))


def test_messages_from_python_are_translated(client):
    client.set_cookie("lang", "th")
    # AccountIdInvalid (lazy), under the username field
    partial = client.get("/tiktok-coins/account?account=a", headers=HX)
    assert "ชื่อผู้ใช้ต้องมี 2–24 ตัว" in visible(partial)
    # a backend's reason (the sandbox's English "No such account."), by its msgid
    partial = client.get("/tiktok-coins/account?account=nobody_at_all", headers=HX)
    assert "ไม่พบบัญชีนี้" in visible(partial) and "No such account" not in visible(partial)
    # the Buy checks in topup/web/shop.py
    response = buy(client, coins=None, email="not-an-address")
    assert response.status_code == 422
    text = visible(response)
    assert "กรุณาเลือกแพ็กเกจ" in text and "อีเมลนี้ดูไม่ถูกต้อง" in text
    # OrderRefused from topup/orders.py: one form, two different orders
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    assert buy(client, tokens=tokens, coins=70).status_code == 303
    refused = buy(client, tokens=tokens, coins=350)
    assert refused.status_code == 422
    assert "แบบฟอร์มนี้ถูกใช้กับคำสั่งซื้ออื่นไปแล้ว" in visible(refused)


@pytest.mark.parametrize("path, locale, title, message", [
    ("/no-such-thing", "es", "Página no encontrada", "Este producto no existe."),
    ("/orders/not-a-real-order", "id", "Halaman tidak ditemukan",
     "Tidak ada pesanan di alamat ini."),
    ("/static/no-such-file.css", "vi", "Không tìm thấy trang", "Không có gì ở địa chỉ này."),
])
def test_error_pages_speak_the_buyers_language(client, path, locale, title, message):
    client.set_cookie("lang", locale)
    response = client.get(path)
    assert response.status_code == 404
    text = visible(response)
    assert title in text and message in text
    assert "Not Found" not in text and "requested URL" not in text


# --- the switcher -----------------------------------------------------------------------


def switcher(page) -> tuple[str, dict, list[str], str]:
    """The language form of a response (or its HTML, as sent): (action, hidden
    fields, language choices, the selected one)."""
    html = page if isinstance(page, str) else page.get_data(as_text=True)
    form = re.search(r'<form class="language" method="get" action="([^"]*)">(.*?)</form>',
                     html, re.S)
    assert form, "no language switcher"
    action, inner = htmllib.unescape(form.group(1)), form.group(2)
    hidden = {name: htmllib.unescape(value) for name, value in
              re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', inner)}
    choices = re.findall(r'<option value="([^"]+)"', inner)
    selected = re.search(r'<option value="([^"]+)"[^>]*selected', inner).group(1)
    assert 'name="lang"' in inner and "<button" in inner
    return action, hidden, choices, selected


def submit(client, page, lang: str):
    """What the browser does when the buyer picks `lang` and presses the button."""
    action, hidden, _choices, _selected = switcher(page)
    return client.get(f"{action}?{urlencode({**hidden, 'lang': lang})}")


def test_the_switcher_keeps_the_buyers_choices(client):
    pid = package_id(350)
    choices = {"country": "BR", "account": "@Maria.Santos", "package": str(pid),
               "method": "sandbox", "email": "m@example.com"}
    page = client.get(f"/tiktok-coins?{urlencode(choices)}&utm_source=x")
    action, hidden, languages, selected = switcher(page)
    assert action == "/tiktok-coins" and hidden == choices  # nothing else (no utm, no tokens)
    assert languages == SUPPORTED_LOCALES and selected == "en"
    response = submit(client, page, "pt_BR")
    assert response.status_code == 200 and lang_cookie(response).startswith("lang=pt_BR;")
    html = body(response)
    assert html_lang(response) == "pt-BR" and PRODUCT_PHRASE["pt_BR"] in visible(html)
    assert '<option value="BR" selected>' in html
    assert 'name="account" value="@Maria.Santos"' in html
    assert re.search(rf'value="{pid}" checked', html) and re.search(r'value="sandbox" checked', html)
    assert 'value="m@example.com"' in html
    assert "✓ Maria Santos" in visible(html)
    assert switcher(response)[1] == choices and switcher(response)[3] == "pt_BR"


def test_the_switcher_keeps_what_was_posted_when_buy_is_refused(client):
    response = buy(client, country="ID", account="@maria.santos", coins=70, email="bad")
    assert response.status_code == 422
    action, hidden, _, _ = switcher(response)
    assert action == "/tiktok-coins"
    assert hidden == {"country": "ID", "account": "@maria.santos", "package": str(package_id(70)),
                      "method": "sandbox", "email": "bad"}
    again = submit(client, response, "id")
    assert again.status_code == 200 and '<option value="ID" selected>' in body(again)
    assert "Rp15.000" in body(again)


def test_the_switcher_is_on_every_buyer_page(client):
    order = place_order(client)
    for path in ("/tiktok-coins", f"/orders/{order.public_id}", "/no-such-thing"):
        action, hidden, languages, _ = switcher(client.get(path))
        assert action == path and hidden == {} and languages == SUPPORTED_LOCALES
    response = submit(client, client.get(f"/orders/{order.public_id}"), "vi")
    assert response.status_code == 200 and ORDER_PHRASE["vi"] in visible(response)


def test_the_switcher_values_are_escaped(client):
    hostile = '"><script>alert(1)</script>'
    page = client.get(f"/tiktok-coins?{urlencode({'account': hostile, 'email': hostile})}")
    assert "<script>alert" not in page.get_data(as_text=True)
    assert switcher(page)[1] == {"account": hostile, "email": hostile}


# --- in the order's language, whatever the reader's --------------------------------------


def test_the_receipt_is_written_in_the_orders_locale(app, client):
    client.set_cookie("lang", "vi")
    order = place_order(client, country="VN", coins=700)
    assert order.locale == "vi"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):  # someone else's request
        subject, text, html = compose(order, "paid", "https://shop.example/orders/x")
    assert subject == f"Đã nhận thanh toán: 700 TikTok Coins (đơn hàng {order.public_id[:8]})"
    assert f"Chúng tôi đã nhận được khoản thanh toán 235.000{NBSP}₫" in text
    assert "Tổng cộng: 235.000" in text and "Mã đơn hàng" in text
    assert '<html lang="vi-VN">' in html and "Xem đơn hàng" in html  # Vietnamese, in Vietnam
    with app.app_context():  # a worker: no request at all
        order = Order.get_by_id(order.id)
        Order.update(locale="pt_BR").where(Order.id == order.id).execute()
        subject, text, _html = compose(Order.get_by_id(order.id), "refunded", None)
    assert subject.startswith("Reembolsado: 700 TikTok Coins")
    assert "%(" not in subject + text


PIX = {"key": "123e4567-e12b-12d1-a456-426655440000", "merchant_name": "Fulano de Tal",
       "merchant_city": "BRASILIA"}


@pytest.fixture
def with_pix(config):
    """Pix configured; asked for before `client`, so the app is made with it."""
    config["PLUGINS"] = {**config["PLUGINS"], "pix": PIX}
    return config


def test_the_order_page_gives_pix_instructions_in_the_buyers_language(with_pix, client):
    client.set_cookie("lang", "pt_BR")
    order = place_order(client, country="BR", method="pix")
    assert order.locale == "pt_BR"
    page = client.get(f"/orders/{order.public_id}")
    assert f"<p>Valor: R${NBSP}5,17</p>" in body(page)
    text = visible(page)
    assert "Pagar para: Fulano de Tal (chave Pix" in text
    assert "ou cole o código no Pix Copia e Cola." in text and "Referência: TU" in text
    assert re.search(r"Pague até \d{4}-\d\d-\d\d \d\d:\d\d \(UTC\)\.", text)
    assert "Amount:" not in text and "Reference:" not in text


def test_payment_instructions_are_written_in_the_orders_locale(app):
    class Pending:
        amount, currency, public_id = 15050, "BRL", "pub_ABCdef-123_xyz"
        expires_at = datetime(2030, 1, 2, 3, 4)
        locale, country = "pt_BR", "BR"

    pix = Pix(PIX)
    with app.test_request_context("/", headers={"Accept-Language": "th"}):
        lines = pix.start(Pending(), "/").instructions
        Pending.locale = "en"
        english = pix.start(Pending(), "/").instructions
    assert lines[0] == f"Valor: R${NBSP}150,50"
    assert lines[1] == "Pagar para: Fulano de Tal (chave Pix 123e4567-e12b-12d1-a456-426655440000)"
    assert lines[-2].startswith("Referência: TU") and lines[-1] == "Pague até 2030-01-02 03:04 (UTC)."
    assert english[0] == "Amount: R$150.50" and english[-1] == "Pay before 2030-01-02 03:04 UTC."


def test_a_browser_s_languages_are_read_once_per_distinct_header(client, monkeypatch):
    """The language and the country both come from Accept-Language: parsed once
    for each distinct header, however many pages ask."""
    import topup.web

    parsed = []
    original = topup.web.parse_accept_header
    monkeypatch.setattr(topup.web, "parse_accept_header",
                        lambda value, cls: parsed.append(value) or original(value, cls))
    topup.web._read_accept_language.cache_clear()
    header = "pt-BR,pt;q=0.9,en;q=0.5"
    for _ in range(3):
        page = client.get("/tiktok-coins", headers={"Accept-Language": header})
        assert '<html lang="pt-BR">' in page.get_data(as_text=True)
        assert 'value="BR" selected' in page.get_data(as_text=True)
    assert parsed == [header]
    long = "en;q=0.1," * 100 + "th"  # only the start counts, and it is what is kept
    assert topup.web.read_accept_language(long) == ("en", "US")
