"""The buyer's shop: product list, product page, inline htmx checks, and Buy."""
from __future__ import annotations

import re

import pytest

from topup.models import Order, Package, Payment, Price, Product
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import buy, form_tokens, package_id, place_order
from tests.web import HX, body, is_full_page, visible

RULE = "Usernames are 2–24 letters, digits, _ or ."

# country -> (currency, minor units of 70 coins, how a buyer reads it in English: as that
# country writes English where CLDR knows it, so Indonesia's is en_ID)
SEVENTY_COINS = {
    "US": ("USD", 94, "$0.94"),
    "ID": ("IDR", 1500000, "Rp15.000"),
    "PH": ("PHP", 5500, "₱55.00"),
    "BR": ("BRL", 517, "R$5.17"),
    "TH": ("THB", 3300, "THB33.00"),
    "IN": ("INR", 8000, "₹80.00"),
    "VN": ("VND", 24000, "₫24,000"),
    "MX": ("MXN", 1700, "MX$17.00"),
}
# country -> 17,500 coins ($234.38 converted, rounded to the currency's step)
LARGEST_PACKAGE = {
    "US": "$234.38", "ID": "Rp3.750.000", "PH": "₱13,594.00", "BR": "R$1,289.09",
    "TH": "THB8,203.00", "IN": "₹19,922.00", "VN": "₫5,860,000", "MX": "MX$4,219.00",
}
# how every price of a currency must look: the right number of decimals
PRICE_SHAPE = {
    "USD": r"\$\d+\.\d{2}", "IDR": r"Rp\d{1,3}(\.\d{3})*", "PHP": r"₱\d{1,3}(,\d{3})*\.\d{2}",
    "BRL": r"R\$\d{1,3}(,\d{3})*\.\d{2}", "THB": r"THB\d{1,3}(,\d{3})*\.\d{2}",
    "INR": r"₹\d{1,3}(,\d{3})*\.\d{2}", "VND": r"₫\d{1,3}(,\d{3})*",
    "MXN": r"MX\$\d{1,3}(,\d{3})*\.\d{2}",
}
QUANTITIES = [30, 70, 350, 700, 1400, 3500, 7000, 17500]
PACKAGE_LINE = re.compile(r"([\d,.]+) coins (\S+)")


def selected_country(html: str) -> str:
    return re.search(r'<option value="([A-Z]{2})" selected>', html).group(1)


def listed_prices(response) -> dict[int, str]:
    options = re.search(r'<div id="options">.*?</fieldset>', response.get_data(as_text=True), re.S)
    return {int(re.sub(r"[,.]", "", q)): price
            for q, price in PACKAGE_LINE.findall(visible(options.group(0)))}


def orders_count() -> int:
    return Order.select().count()


# --- the product list ----------------------------------------------------------


def test_index_is_the_only_products_page_without_a_redirect(client):
    response = client.get("/?account=maria.s")
    assert response.status_code == 200  # no round trip spent on a redirect
    html = body(response)
    assert 'action="/tiktok-coins"' in html and "Maria" in html  # the form, its query filled in


def test_index_lists_products_when_there_are_two(client):
    Product.create(slug="diamonds", name="Game Diamonds", unit="diamonds",
                   account_kind="tiktok", delivery_backend="sandbox", sort=1)
    response = client.get("/")
    assert response.status_code == 200
    html = body(response)
    assert 'href="/tiktok-coins"' in html and "TikTok Coins" in html
    assert 'href="/diamonds"' in html and "Game Diamonds" in html
    assert html.index("TikTok Coins") < html.index("Game Diamonds")  # sorted


def test_index_says_so_when_nothing_is_on_sale(client):
    Product.update(enabled=False).execute()
    response = client.get("/")
    assert response.status_code == 200
    assert "Nothing is on sale yet." in visible(response)


def test_unknown_product_is_a_human_404(client):
    response = client.get("/no-such-thing")
    assert response.status_code == 404
    assert "There is no such product." in visible(response)
    assert 'href="/"' in body(response)  # a way back


def test_disabled_product_is_404(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    Product.update(enabled=False).execute()
    assert client.get("/tiktok-coins").status_code == 404
    assert buy(client, tokens=tokens).status_code == 404  # a valid form, so no 400 first
    assert orders_count() == 0


# --- the product page: country and prices -------------------------------------


@pytest.mark.parametrize("header, country, price, not_shown", [
    ("id-ID,id;q=0.9", "ID", "Rp15.000", "$0.94"),
    ("pt-BR,pt;q=0.9,en;q=0.8", "BR", "R$5.17", "$0.94"),
    ("en-PH", "PH", "₱55.00", "$0.94"),
    (None, "US", "$0.94", "Rp"),
    ("en-US,en;q=0.9", "US", "$0.94", "R$"),
])
def test_default_country_comes_from_accept_language(client, header, country, price, not_shown):
    client.set_cookie("lang", "en")  # the country follows the browser; the page stays in English
    headers = {"Accept-Language": header} if header else {}
    response = client.get("/tiktok-coins", headers=headers)
    assert response.status_code == 200
    html = body(response)
    assert selected_country(html) == country
    prices = listed_prices(response)
    assert prices[70] == price
    assert not any(not_shown in p for p in prices.values())


def test_country_in_the_query_overrides_the_browser_language(client):
    client.set_cookie("lang", "en")  # the country follows the browser; the page stays in English
    response = client.get("/tiktok-coins?country=TH", headers={"Accept-Language": "id-ID"})
    assert selected_country(body(response)) == "TH"
    assert listed_prices(response)[70] == "THB33.00"
    # lower case works too, an unknown code falls back to the language
    assert selected_country(body(client.get("/tiktok-coins?country=th"))) == "TH"
    response = client.get("/tiktok-coins?country=ZZ", headers={"Accept-Language": "vi"})
    assert selected_country(body(response)) == "VN"


@pytest.mark.parametrize("country", list(SEVENTY_COINS))
def test_every_country_lists_every_package_in_its_currency(client, country):
    currency, minor, text = SEVENTY_COINS[country]
    response = client.get(f"/tiktok-coins?country={country}")
    assert response.status_code == 200
    html = body(response)
    assert f'<option value="{country}" selected>' in html
    prices = listed_prices(response)
    assert sorted(prices) == QUANTITIES
    assert prices[70] == text and prices[17500] == LARGEST_PACKAGE[country]
    for quantity, price in prices.items():
        assert re.fullmatch(PRICE_SHAPE[currency], price), (quantity, price)
    # the stored price, in minor units, is what the page shows
    stored = Price.get(Price.package == package_id(70), Price.currency == currency)
    assert stored.amount == minor
    # larger packages cost more
    amounts = [Price.get(Price.package == package_id(q), Price.currency == currency).amount
               for q in QUANTITIES]
    assert amounts == sorted(amounts) and len(set(amounts)) == len(amounts)


def test_price_table_prices_every_package_in_every_currency_on_its_step(client):
    prices = list(Price.select())
    assert len(prices) == 8 * 9  # packages x currencies of the demo catalog
    assert all(price.amount > 0 for price in prices)
    # VND has no minor unit: amounts are whole dong on a 1,000 step
    assert all(p.amount % 1000 == 0 for p in prices if p.currency == "VND")
    # IDR keeps 2 digits in the table, priced on a Rp1,000 step
    assert all(p.amount % 100000 == 0 for p in prices if p.currency == "IDR")


def test_the_page_prefills_from_the_query_string(client):
    pid = package_id(350)
    response = client.get(f"/tiktok-coins?country=BR&account=%40Maria.Santos&package={pid}"
                          f"&method=sandbox&email=m%40example.com")
    html = body(response)
    assert selected_country(html) == "BR"
    assert 'name="account" value="@Maria.Santos"' in html
    assert re.search(rf'value="{pid}" checked', html)
    assert re.search(r'value="sandbox" checked', html)
    assert 'value="m@example.com"' in html
    assert "✓ Maria Santos" in visible(response)


def test_a_query_string_never_breaks_the_page(client):
    for query in ("package=abc", "package=999999", "account=" + "x" * 5000,
                  "method=nope", "country[]=US", "account=%ff%fe"):
        response = client.get(f"/tiktok-coins?{query}")
        assert response.status_code == 200, query
    assert client.get("/tiktok-coins?country=%00").status_code == 400  # NUL: refused up front


# --- htmx partials ------------------------------------------------------------


def test_account_partial_shows_the_nickname(client):
    response = client.get("/tiktok-coins/account?account=%40Maria.Santos", headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert not is_full_page(html)
    assert "HX-Request" in response.headers.get("Vary", "")
    assert "✓ Maria Santos" in visible(html)
    assert "@maria.santos" in visible(html)


@pytest.mark.parametrize("raw, message", [
    ("nobody_at_all", "No such account."),
    ("@nobody", "No such account."),
    ("a", RULE),
    ("bad name!", RULE),
    ("dots.at.end.", "Usernames can't end with a period."),
    ("x" * 25, RULE),
])
def test_account_partial_explains_what_is_wrong(client, raw, message):
    response = client.get("/tiktok-coins/account", query_string={"account": raw}, headers=HX)
    assert response.status_code == 200
    assert not is_full_page(body(response))
    assert visible(response) == message


def test_account_partial_with_nothing_typed_shows_the_hint(client):
    response = client.get("/tiktok-coins/account?account=%20", headers=HX)
    assert response.status_code == 200
    assert "We'll show the account's name" in visible(response)


def test_account_check_without_htmx_redirects_to_the_full_page(client):
    response = client.get("/tiktok-coins/account?account=%40Maria.Santos")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/tiktok-coins?")
    assert "account=%40Maria.Santos" in location or "account=@Maria.Santos" in location
    page = client.get(location)
    assert page.status_code == 200 and is_full_page(body(page))
    assert "✓ Maria Santos" in visible(page)


def test_options_partial_prices_in_the_chosen_currency(client):
    response = client.get("/tiktok-coins/options?country=VN", headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert not is_full_page(html)
    assert html.lstrip().startswith('<div id="options">')
    assert "HX-Request" in response.headers.get("Vary", "")
    prices = listed_prices(response)
    assert sorted(prices) == QUANTITIES and prices[70] == "₫24,000"
    assert "$" not in visible(html)
    assert "Sandbox (test payment)" in visible(html)
    response = client.get("/tiktok-coins/options?country=ID", headers=HX)
    assert listed_prices(response)[70] == "Rp15.000"


def test_options_without_htmx_redirects_to_the_full_page(client):
    response = client.get("/tiktok-coins/options?country=MX")
    assert response.status_code == 303
    assert response.headers["Location"] == "/tiktok-coins?country=MX"
    assert listed_prices(client.get(response.headers["Location"]))[70] == "MX$17.00"


def test_partials_of_an_unknown_product_are_404(client):
    assert client.get("/nope/account?account=abc", headers=HX).status_code == 404
    assert client.get("/nope/options?country=US", headers=HX).status_code == 404


# --- Buy: success -----------------------------------------------------------------


def test_buy_redirects_to_an_unguessable_order_page(client):
    response = buy(client)
    assert response.status_code == 303
    location = response.headers["Location"]
    match = re.fullmatch(r"/orders/([A-Za-z0-9_-]+)", location)
    assert match, location
    public_id = match.group(1)
    assert len(public_id) >= 20
    assert Order.get_or_none(Order.public_id == public_id)
    other = place_order(client, account="@someone_else")
    assert other.public_id != public_id
    assert client.get(location).status_code == 200


def test_buy_stores_the_order_as_the_server_prices_it(client):
    response = buy(client, country="ID", coins=70, email="buyer@example.com",
                   amount="1", price="1", currency="XXX", total="0", quantity="999999",
                   status="delivered", account_id="victim")
    assert response.status_code == 303
    order = Order.get()
    assert (order.amount, order.currency, order.country) == (1500000, "IDR", "ID")
    assert order.quantity == 70 and order.package_id == package_id(70)
    assert order.status == "awaiting_payment"
    assert order.account_id == "demo_user" and order.account_nickname == "Demo User"
    assert order.email == "buyer@example.com" and order.payment_method == "sandbox"
    payment = Payment.get()
    assert (payment.amount, payment.currency) == (1500000, "IDR")
    checkout = SandboxCheckout.get()
    assert (checkout.amount, checkout.currency) == (1500000, "IDR")


def test_buy_normalises_the_username(client):
    order = place_order(client, account="  @Demo.User ")
    assert order.account_id == "demo.user"
    assert order.account_nickname == "Demo User"


def test_buy_country_is_case_insensitive(client):
    order = place_order(client, country="br")
    assert (order.country, order.currency, order.amount) == ("BR", "BRL", 517)


# --- Buy: validation ----------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"country": "ZZ"}, "Choose your country."),
    ({"country": ""}, "Choose your country."),
    ({"account": "a"}, RULE),
    ({"account": "bad name!"}, RULE),
    ({"account": ""}, "Enter a username."),
    ({"account": "@"}, "Enter a username."),
    ({"account": "trailing."}, "Usernames can't end with a period."),
    ({"account": "@nobody_home"}, "No such account."),
    ({"coins": None}, "Choose a package."),
    ({"coins": None, "package": "abc"}, "Choose a package."),
    ({"coins": None, "package": "-1"}, "Choose a package."),
    ({"coins": None, "package": "1.5"}, "Choose a package."),
    ({"coins": None, "package": "999999"}, "Choose a package."),
    ({"coins": None, "package": "²"}, "Choose a package."),  # str.isdigit() but not int()
    ({"coins": None, "package": "9" * 30}, "Choose a package."),  # beyond any integer column
    ({"method": "paypal"}, "Choose a payment method."),
    ({"method": ""}, "Choose a payment method."),
    ({"email": "not-an-email"}, "This e-mail address doesn't look right."),
    ({"email": "a@b"}, "This e-mail address doesn't look right."),
    ({"email": "a b@example.com"}, "This e-mail address doesn't look right."),
], ids=lambda value: ",".join(f"{k}={v!r}"[:24] for k, v in value.items())
   if isinstance(value, dict) else None)
def test_invalid_buy_is_422_with_a_human_message_and_no_order(client, fields, message):
    response = buy(client, **fields)
    assert response.status_code == 422
    assert message in visible(response)
    assert orders_count() == 0 and Payment.select().count() == 0
    # the page can be submitted again: fresh tokens are there
    assert form_tokens(body(response))


def test_every_error_is_shown_at_once_and_the_values_are_kept(client):
    response = buy(client, country="ZZ", account="bad name!", coins=None, method="x",
                   email="nope")
    assert response.status_code == 422
    text = visible(response)
    for message in ("Choose your country.", RULE, "Choose a package.",
                    "Choose a payment method.", "This e-mail address doesn't look right."):
        assert message in text
    html = body(response)
    assert 'value="bad name!"' in html and 'value="nope"' in html
    assert orders_count() == 0


def test_a_package_not_priced_in_the_buyers_currency_is_refused(client):
    product = Product.get(Product.slug == "tiktok-coins")
    usd_only = Package.create(product=product, quantity=5, sort=99)
    Price.create(package=usd_only, currency="USD", amount=10)
    response = buy(client, country="ID", coins=None, package=str(usd_only.id))
    assert response.status_code == 422
    assert "Choose a package." in visible(response)
    assert orders_count() == 0
    # in its own currency it sells
    assert buy(client, country="US", coins=None, package=str(usd_only.id)).status_code == 303
    assert Order.get().amount == 10


def test_a_package_of_another_product_or_disabled_is_refused(client):
    other = Product.create(slug="gems", name="Gems", unit="gems", delivery_backend="sandbox")
    foreign = Package.create(product=other, quantity=10)
    Price.create(package=foreign, currency="USD", amount=1)
    assert buy(client, coins=None, package=str(foreign.id)).status_code == 422
    Package.update(enabled=False).where(Package.id == package_id(70)).execute()
    response = buy(client, coins=70)
    assert response.status_code == 422 and "Choose a package." in visible(response)
    assert orders_count() == 0


def test_a_method_that_does_not_serve_the_country_is_refused(client, app, monkeypatch):
    provider = app.extensions["topup"].providers["sandbox"]
    monkeypatch.setattr(provider, "serves", lambda country, currency: country == "US")
    response = buy(client, country="BR")
    assert response.status_code == 422
    assert "Choose a payment method." in visible(response)
    assert orders_count() == 0


def test_a_method_that_refuses_the_amount_says_so(client, app, monkeypatch):
    provider = app.extensions["topup"].providers["sandbox"]
    monkeypatch.setattr(provider, "max_amount", {"USD": 100})
    assert buy(client, coins=70).status_code == 303
    response = buy(client, coins=350)
    assert response.status_code == 422
    assert "Sandbox (test payment) can't be used for this amount." in visible(response)
    assert orders_count() == 1


@pytest.mark.parametrize("token", [None, "", "garbage", "ImZhIg.ZZZZ.AAAA"])
def test_missing_or_wrong_csrf_token_is_a_human_400(client, token):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    if token is None:
        del tokens["csrf_token"]
    else:
        tokens["csrf_token"] = token
    response = buy(client, tokens=tokens)
    assert response.status_code == 400
    text = visible(response)
    assert "This form has expired" in text and "reload the page" in text
    assert is_full_page(body(response))
    assert orders_count() == 0


def test_a_csrf_token_from_another_browser_is_refused(app):
    alice, mallory = app.test_client(), app.test_client()
    tokens = form_tokens(alice.get("/tiktok-coins").get_data(as_text=True))
    mallory.get("/tiktok-coins")
    response = buy(mallory, tokens=tokens)
    assert response.status_code == 400
    assert orders_count() == 0


@pytest.mark.parametrize("key", [None, "", "short", "x" * 65, "has spaces in it ok?", "é" * 20])
def test_missing_or_malformed_idempotency_key_is_422(client, key):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    if key is None:
        del tokens["idempotency_key"]
    else:
        tokens["idempotency_key"] = key
    response = buy(client, tokens=tokens)
    assert response.status_code == 422
    assert "Please reload the page and try again." in visible(response)
    assert orders_count() == 0


def test_the_same_idempotency_key_twice_is_one_order(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    first = buy(client, tokens=tokens)
    second = buy(client, tokens=tokens)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert orders_count() == 1
    assert Payment.select().count() == 1 and SandboxCheckout.select().count() == 1
    # the spelling of the same username does not matter either
    third = buy(client, tokens=tokens, account="@DEMO_USER")
    assert third.status_code == 303 and third.headers["Location"] == first.headers["Location"]
    assert orders_count() == 1


def test_the_same_idempotency_key_with_other_choices_is_refused(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    assert buy(client, tokens=tokens, coins=70).status_code == 303
    for change in ({"coins": 350}, {"account": "@someone_else"}, {"country": "BR"},
                   {"email": "x@example.com"}):
        response = buy(client, tokens=tokens, **change)
        assert response.status_code == 422, change
        assert "This form was already used for another order." in visible(response)
    assert orders_count() == 1
    assert Order.get().quantity == 70
    # the refusal page carries a new key, so pressing Buy again works
    retry = form_tokens(body(response))
    assert retry["idempotency_key"] != tokens["idempotency_key"]
    assert buy(client, tokens=retry, coins=350).status_code == 303
    assert orders_count() == 2


def test_every_page_view_gets_its_own_idempotency_key(client):
    keys = {form_tokens(client.get("/tiktok-coins").get_data(as_text=True))["idempotency_key"]
            for _ in range(5)}
    assert len(keys) == 5


def test_refresh_intent_rerenders_the_page_with_the_username_checked(client):
    response = buy(client, intent="refresh", account="@Maria.Santos", country="BR",
                   email="m@example.com", coins=None)
    assert response.status_code == 200
    text = visible(response)
    assert "✓ Maria Santos" in text
    html = body(response)
    assert selected_country(html) == "BR"
    assert listed_prices(response)[70] == "R$5.17"
    assert 'value="@Maria.Santos"' in html and 'value="m@example.com"' in html
    assert orders_count() == 0


def test_refresh_intent_with_a_bad_username_says_why(client):
    response = buy(client, intent="refresh", account="@nobody")
    assert response.status_code == 200
    assert "No such account." in visible(response)
    assert orders_count() == 0


def test_a_long_but_allowed_body_is_a_422_not_a_500(client):
    response = buy(client, account="a" * 50_000)
    assert response.status_code == 422
    assert RULE in visible(response)
    # the echoed value is cut down, not 50 KB back
    assert len(response.get_data()) < 40_000


def test_many_unknown_form_fields_are_ignored_and_the_order_is_placed(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    extra = {f"f{i}": "1" for i in range(2000)}
    response = buy(client, tokens=tokens, **extra)
    assert response.status_code == 303
    assert orders_count() == 1


# --- the landing page's render cache -------------------------------------------------


@pytest.fixture
def cached(app):
    app.config["PAGE_CACHE_SECONDS"] = 60
    return app


def test_the_landing_page_is_rendered_once_but_every_visitor_gets_their_own_tokens(cached):
    first, second = cached.test_client(), cached.test_client()
    one = first.get("/tiktok-coins").get_data(as_text=True)
    Price.update(amount=Price.amount + 100).execute()  # within the cache's life: not shown yet
    two = second.get("/tiktok-coins").get_data(as_text=True)
    tokens = [form_tokens(page) for page in (one, two)]
    assert tokens[0]["csrf_token"] != tokens[1]["csrf_token"]
    assert tokens[0]["idempotency_key"] != tokens[1]["idempotency_key"]
    assert "@@topup" not in one + two
    strip = lambda page: re.sub(r'value="[A-Za-z0-9_.-]{20,}"', "", page)
    assert strip(one) == strip(two)
    # The cached page's tokens work, and Buy prices from the database, not the page.
    response = buy(second, tokens=tokens[1])
    assert response.status_code == 303
    order = Order.get(Order.public_id == response.headers["Location"].rsplit("/", 1)[1])
    assert order.amount == Price.get(Price.package == order.package, Price.currency == "USD").amount


def test_the_cache_is_per_country_and_language_and_skips_filled_in_forms(cached):
    client = cached.test_client()
    us = client.get("/tiktok-coins", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    br = client.get("/tiktok-coins", headers={"Accept-Language": "pt-BR"}).get_data(as_text=True)
    assert "$0.94" in us and "R$" in br and "R$" not in us
    filled = client.get("/tiktok-coins?account=maria.s").get_data(as_text=True)
    assert "Maria" in filled and "Maria" not in client.get("/tiktok-coins").get_data(as_text=True)


def test_a_product_taken_off_sale_is_gone_once_the_cache_expires(cached):
    client = cached.test_client()
    assert client.get("/tiktok-coins/account?account=maria.s", headers=HX).status_code == 200
    Product.update(enabled=False).execute()
    assert client.get("/tiktok-coins/account?account=maria.s", headers=HX).status_code == 200
    cached.config["PAGE_CACHE_SECONDS"] = 0
    cached.extensions["topup.products"].clear()  # as if PAGE_CACHE_SECONDS had passed
    assert client.get("/tiktok-coins/account?account=maria.s", headers=HX).status_code == 404
    assert client.get("/no-such-product/account", headers=HX).status_code == 404
    assert "no-such-product" not in cached.extensions["topup.products"]
