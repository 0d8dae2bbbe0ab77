"""Offline QR / transfer payment plugins: EMV TLV and CRC, Pix, PromptPay, QRIS,
UPI, SEPA (EPC QR), the qr_svg filter and the order page.

Published vectors:
- Pix: thalesog/pix-utils tests/emvCodes.ts (STATIC_TEST_EMV, CRC 4367;
  STATIC_TEST_NO_VALUE_ELEMENT_EMV, CRC 2C6B) and the static example of the BCB's
  "Manual de Padrões para Iniciação do Pix" (Fulano de Tal / BRASILIA, CRC 1D3D).
- PromptPay: dtinth/promptpay-qr index.test.js (every case there).
"""
from __future__ import annotations

import html
import io
import re
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
import segno
import zxingcpp
from PIL import Image, ImageDraw

from topup import create_app, orders
from topup.money import Money
from topup.payments import NotConfigured, WebhookRejected
from topup.web.qr import qr_svg
from topup_plugins.qr import emv
from topup_plugins.qr.common import order_reference
from topup_plugins.qr.pix import Pix, normalize_key, pix_payload
from topup_plugins.qr.promptpay import PromptPay, promptpay_payload, promptpay_target
from topup_plugins.qr.qris import QRIS, parse_qris, with_amount
from topup_plugins.qr.sepa import EURO_COUNTRIES, SepaTransfer, epc_payload, normalize_iban
from topup_plugins.qr.upi import UPI, upi_uri

from tests.conftest import buy, place_order

# A made-up static merchant QRIS, shaped like the real ones (26 issuer, 51 QRIS national).
STATIC_QRIS = emv.build([
    ("01", "11"),
    ("26", [("00", "ID.CO.EXAMPLE.WWW"), ("01", "936000000000000001"), ("02", "EXAMPLE01"),
            ("03", "UMI")]),
    ("51", [("00", "ID.CO.QRIS.WWW"), ("02", "ID1020000000001"), ("03", "UMI")]),
    ("52", "5411"), ("53", "360"), ("58", "ID"), ("59", "TOKO CONTOH"), ("60", "JAKARTA"),
    ("61", "10110"), ("62", [("07", "A01")]),
])

SETTINGS = {
    "pix": {"key": "123e4567-e12b-12d1-a456-426655440000", "merchant_name": "Fulano de Tal",
            "merchant_city": "BRASILIA"},
    "promptpay": {"id": "080-123-4567", "merchant_name": "Topup Thailand"},
    "qris": {"qris": STATIC_QRIS},
    "upi": {"vpa": "topup.shop@okicici", "name": "Topup Shop & Co"},
    "sepa": {"iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX", "name": "Topup GmbH"},
}
CLASSES = {"pix": Pix, "promptpay": PromptPay, "qris": QRIS, "upi": UPI, "sepa": SepaTransfer}
WHERE = {"pix": "BR", "promptpay": "TH", "qris": "ID", "upi": "IN"}  # countries the shop sells in


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"], **SETTINGS}
    return config


class FakeOrder:
    def __init__(self, amount, currency, public_id="pub_ABCdef-123_xyz"):
        self.amount, self.currency, self.public_id = amount, currency, public_id
        self.locale, self.country = "en", None  # no country: written as English writes it
        self.expires_at = datetime(2030, 1, 2, 3, 4)


# --- EMV core -------------------------------------------------------------------------


def test_crc16_ccitt_false_known_answers():
    assert emv.crc16("123456789") == 0x29B1  # the CRC catalogue's check value
    assert emv.crc16(b"") == 0xFFFF
    assert emv.crc16("A") == 0xB915


def test_tlv_encodes_tag_length_value_and_nests():
    assert emv.tlv("00", "01") == "000201"
    assert emv.tlv("59", "x" * 25) == "5925" + "x" * 25
    assert emv.encode([("26", [("00", "br.gov.bcb.pix"), ("01", "k")])]) == \
        "2623" + "0014br.gov.bcb.pix" + "0101k"
    for tag, value in (("0", "x"), ("ab", "x"), ("01", ""), ("01", "x" * 100)):
        with pytest.raises(emv.EMVError):
            emv.tlv(tag, value)


def test_build_puts_00_first_and_the_crc_last_and_parse_reads_it_back():
    payload = emv.build([("01", "12"), ("53", "764"), ("54", "15000.00"), ("58", "TH")])
    assert payload.startswith("000201010212")
    assert payload[-8:-4] == "6304" and payload[-4:] == f"{emv.crc16(payload[:-4]):04X}"
    assert emv.parse_checked(payload) == [("00", "01"), ("01", "12"), ("53", "764"),
                                          ("54", "15000.00"), ("58", "TH"),
                                          ("63", payload[-4:])]
    broken = payload[:-1] + ("0" if payload[-1] != "0" else "1")
    with pytest.raises(emv.EMVError, match="CRC"):
        emv.parse_checked(broken)
    with pytest.raises(emv.EMVError, match="runs past"):
        emv.parse("000201" + "5910short")
    with pytest.raises(emv.EMVError, match="starts with"):
        emv.parse_checked(emv.with_crc("0102115802TH"))
    with pytest.raises(emv.EMVError):
        emv.build([("00", "01")])


def test_amounts_are_exact_decimal_strings():
    assert emv.format_amount(Money(1500000, "IDR"), 0) == "15000"
    assert emv.format_amount(Money(1500000, "THB"), 2) == "15000.00"
    assert emv.format_amount(Money(422, "THB"), 2) == "4.22"
    assert emv.format_amount(Money(15000, "VND"), 0) == "15000"
    with pytest.raises(ValueError):
        emv.format_amount(Money(1500050, "IDR"), 0)  # Rp 15,000.50 is not whole rupiah
    with pytest.raises(ValueError):
        emv.format_amount(Money(0, "BRL"), 2)
    with pytest.raises(ValueError):
        emv.format_amount(Money(10**14, "BRL"), 2)  # over 13 characters


def test_numeric_currencies():
    assert [emv.NUMERIC_CURRENCY[c] for c in ("BRL", "THB", "IDR", "VND", "INR")] == \
        ["986", "764", "360", "704", "356"]


# --- Pix ------------------------------------------------------------------------------

PIX_UTILS_STATIC = ("00020126510014br.gov.bcb.pix0115thalesog@me.com0210Pedido 123520400005303"
                    "986540510.005802BR5914Thales Ogliari6015SAO MIGUEL DO O62070503***63044367")
PIX_UTILS_NO_AMOUNT = ("00020126510014br.gov.bcb.pix0115thalesog@me.com0210Pedido 1235204000053"
                       "039865802BR5914Thales Ogliari6015SAO MIGUEL DO O62070503***63042C6B")
BCB_MANUAL_STATIC = ("00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-42665544000052040"
                     "00053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D")


def test_pix_matches_the_published_vectors():
    thales = dict(key="thalesog@me.com", merchant_name="Thales Ogliari",
                  merchant_city="SÃO MIGUÉL DO O", description="Pedido 123")
    assert pix_payload(**thales, amount=Money(1000, "BRL")) == PIX_UTILS_STATIC
    assert pix_payload(**thales) == PIX_UTILS_NO_AMOUNT
    assert pix_payload(key="123e4567-e12b-12d1-a456-426655440000", merchant_name="Fulano de Tal",
                       merchant_city="BRASILIA") == BCB_MANUAL_STATIC
    for vector in (PIX_UTILS_STATIC, PIX_UTILS_NO_AMOUNT, BCB_MANUAL_STATIC):
        assert emv.crc_ok(vector)


def test_pix_for_an_order_is_one_time_with_its_amount_and_txid():
    pix = Pix(SETTINGS["pix"])
    order = FakeOrder(15050, "BRL")
    action = pix.start(order, "/orders/x")
    tags = dict(emv.parse_checked(action.qr_payload))
    assert action.kind == "qr" and action.code == action.qr_payload
    assert tags["01"] == "12" and tags["53"] == "986" and tags["54"] == "150.50"
    assert tags["58"] == "BR" and tags["59"] == "Fulano de Tal" and tags["60"] == "BRASILIA"
    assert dict(emv.parse(tags["26"])) == {"00": "br.gov.bcb.pix",
                                           "01": "123e4567-e12b-12d1-a456-426655440000"}
    txid = dict(emv.parse(tags["62"]))["05"]
    assert txid == action.provider_ref == order_reference(order)
    assert txid.isalnum() and len(txid) <= 25
    assert order.public_id not in action.qr_payload  # the order's address stays secret
    assert any("R$150.50" in line for line in action.instructions)
    assert any("2030-01-02 03:04 UTC" in line for line in action.instructions)


def test_pix_names_are_ascii_and_cut_to_the_limits():
    pix = Pix({"key": "123.456.789-09", "merchant_name": "Padaria Pão de Açúcar da Esquina Ltda",
               "merchant_city": "São José dos Campos"})
    assert pix.key == "12345678909" and normalize_key("+5511999990000") == "+5511999990000"
    assert pix.merchant_name == "Padaria Pao de Acucar da"  # 25 characters, trailing space cut
    assert pix.merchant_city == "Sao Jose dos Ca"


def test_order_references_are_unique_per_order_and_stable():
    a, b = FakeOrder(1, "BRL", "order-a"), FakeOrder(1, "BRL", "order-b")
    assert order_reference(a) == order_reference(FakeOrder(2, "THB", "order-a"))
    assert order_reference(a) != order_reference(b)
    assert order_reference(a).isalnum() and len(order_reference(a)) == 16


# --- PromptPay ------------------------------------------------------------------------

PROMPTPAY_VECTORS = [  # dtinth/promptpay-qr index.test.js
    ("0801234567", None,
     "00020101021129370016A000000677010111011300668012345675802TH530376463046197"),
    ("080-123-4567", None,
     "00020101021129370016A000000677010111011300668012345675802TH530376463046197"),
    ("+66-89-123-4567", None,
     "00020101021129370016A000000677010111011300668912345675802TH5303764630429C1"),
    ("1111111111111", None,
     "00020101021129370016A000000677010111021311111111111115802TH530376463047B5A"),
    ("1-1111-11111-11-1", None,
     "00020101021129370016A000000677010111021311111111111115802TH530376463047B5A"),
    ("0123456789012", None,
     "00020101021129370016A000000677010111021301234567890125802TH530376463040CBD"),
    ("000-000-0000", Money(422, "THB"),
     "00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469"),
]


@pytest.mark.parametrize("target, amount, expected", PROMPTPAY_VECTORS)
def test_promptpay_matches_the_published_vectors(target, amount, expected):
    assert promptpay_payload(target, amount) == expected


def test_promptpay_targets():
    assert promptpay_target("0801234567") == ("01", "0066801234567")
    assert promptpay_target("1111111111111") == ("02", "1111111111111")
    assert promptpay_target("123456789012345") == ("03", "123456789012345")
    for wrong in ("12345", "1801234567", "08012345678"):
        with pytest.raises(ValueError):
            promptpay_target(wrong)
    with pytest.raises(ValueError):
        PromptPay({"id": "12345"})


def test_promptpay_for_an_order():
    action = PromptPay(SETTINGS["promptpay"]).start(FakeOrder(25000, "THB"), "/")
    tags = dict(emv.parse_checked(action.qr_payload))
    assert tags["01"] == "12" and tags["53"] == "764" and tags["54"] == "250.00"
    assert tags["58"] == "TH" and tags["29"] == "0016A0000006770101110113" + "0066801234567"


# --- QRIS -----------------------------------------------------------------------------


def test_qris_amount_injection_round_trip():
    dynamic = with_amount(STATIC_QRIS, Money(1500000, "IDR"))
    before, after = emv.parse_checked(STATIC_QRIS), emv.parse_checked(dynamic)
    assert dict(after)["01"] == "12" and dict(after)["54"] == "15000"
    unchanged = ("00", "01", "54", "63")
    kept = [item for item in after if item[0] not in unchanged]
    assert kept == [item for item in before if item[0] not in unchanged]
    tags = [tag for tag, _ in after]
    assert tags == ["00", "01", "26", "51", "52", "53", "54", "58", "59", "60", "61", "62", "63"]
    # Injecting again replaces the amount rather than adding a second one.
    again = emv.parse_checked(with_amount(dynamic, Money(2500000, "IDR")))
    assert [tag for tag, _ in again] == tags and dict(again)["54"] == "25000"


def test_qris_refuses_damaged_or_foreign_codes():
    damaged = STATIC_QRIS[:-4] + ("0000" if STATIC_QRIS[-4:] != "0000" else "1111")
    with pytest.raises(emv.EMVError, match="CRC"):
        parse_qris(damaged)
    with pytest.raises(emv.EMVError, match="not a QRIS"):
        parse_qris(promptpay_payload("0801234567"))
    with pytest.raises(ValueError):
        QRIS({"qris": damaged})
    qris = QRIS(SETTINGS["qris"])
    assert qris.merchant_name == "TOKO CONTOH"
    assert qris.accepts(Money(1500000, "IDR")) and not qris.accepts(Money(1500050, "IDR"))
    assert not qris.accepts(Money(10_000_001_00, "IDR"))


# --- UPI ------------------------------------------------------------------------------


def test_upi_uri_is_percent_encoded():
    uri = upi_uri(vpa="topup.shop@okicici", name="Café & Co", amount=Money(9400, "INR"),
                  note="Order TU1 #2", reference="TU1")
    assert uri == ("upi://pay?pa=topup.shop@okicici&pn=Caf%C3%A9%20%26%20Co&am=94.00&cu=INR"
                   "&tn=Order%20TU1%20%232&tr=TU1")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("upi", "pay")
    assert dict(parse_qsl(parts.query)) == {"pa": "topup.shop@okicici", "pn": "Café & Co",
                                            "am": "94.00", "cu": "INR", "tn": "Order TU1 #2",
                                            "tr": "TU1"}


def test_upi_action_has_a_tap_to_pay_link():
    upi = UPI({**SETTINGS["upi"], "mc": "5816"})
    order = FakeOrder(12345, "INR")
    action = upi.start(order, "/")
    assert action.kind == "qr" and action.url == action.qr_payload
    query = dict(parse_qsl(urlsplit(action.url).query))
    assert query["am"] == "123.45" and query["tr"] == order_reference(order)
    assert query["mc"] == "5816" and query["pn"] == "Topup Shop & Co"
    assert action.code == "topup.shop@okicici"
    with pytest.raises(ValueError):
        UPI({"vpa": "not-a-vpa", "name": "x"})


# --- SEPA -----------------------------------------------------------------------------


def test_iban_validation():
    assert normalize_iban("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert normalize_iban("GB82 WEST 1234 5698 7654 32") == "GB82WEST12345698765432"
    assert normalize_iban("NL91ABNA0417164300") == "NL91ABNA0417164300"
    for wrong in ("DE88370400440532013000",  # check digits
                  "DE8937040044053201300",  # one short
                  "12345", ""):
        with pytest.raises(ValueError):
            normalize_iban(wrong)
    with pytest.raises(ValueError, match="IBAN"):
        SepaTransfer({"iban": "DE88370400440532013000", "name": "Topup GmbH"})


def test_epc_payload_lines():
    payload = epc_payload(name="Topup GmbH", iban="DE89370400440532013000", bic="COBADEFFXXX",
                          amount=Money(1999, "EUR"), remittance="TUABC")
    assert payload.split("\n") == ["BCD", "002", "1", "SCT", "COBADEFFXXX", "Topup GmbH",
                                   "DE89370400440532013000", "EUR19.99", "", "", "TUABC"]
    assert "\r" not in payload and not payload.endswith("\n")
    with pytest.raises(ValueError):
        epc_payload(name="x", iban="DE89370400440532013000", amount=Money(100, "USD"),
                    remittance="r")


def test_sepa_action_gives_the_details_as_text_too():
    sepa = SepaTransfer(SETTINGS["sepa"])
    order = FakeOrder(4999, "EUR")
    action = sepa.start(order, "/")
    lines = action.qr_payload.split("\n")
    assert lines[7] == "EUR49.99" and lines[10] == order_reference(order) == action.code
    text = "\n".join(action.instructions)
    assert "IBAN: DE89 3704 0044 0532 0130 00" in text and "BIC: COBADEFFXXX" in text
    assert f"Reference: {action.provider_ref}" in text and "€49.99" in text
    assert {"DE", "FR", "NL", "ES", "IT", "AT", "BE", "IE", "FI", "PT"} <= EURO_COUNTRIES
    assert sepa.serves("DE", "EUR")
    assert not sepa.serves("DE", "USD") and not sepa.serves("US", "EUR")


# --- settings and the registry ------------------------------------------------------


@pytest.mark.parametrize("plugin", sorted(CLASSES))
def test_missing_settings_mean_not_configured(plugin):
    with pytest.raises(NotConfigured):
        CLASSES[plugin]({})
    for key in SETTINGS[plugin]:
        partial = {k: v for k, v in SETTINGS[plugin].items() if k != key}
        if key in CLASSES[plugin].required_settings:
            with pytest.raises(NotConfigured):
                CLASSES[plugin](partial)


def test_an_unconfigured_install_quietly_offers_none_of_them(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"] = {"sandbox_payment": config["PLUGINS"]["sandbox_payment"]}
    registry = create_app(config).extensions["topup"]
    assert set(CLASSES) <= set(registry.not_configured)
    assert not set(CLASSES) & set(registry.providers) and not registry.errors


def test_a_wrong_setting_is_a_plugin_error(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"]["sepa"] = {"iban": "DE00 1234", "name": "x"}
    registry = create_app(config).extensions["topup"]
    assert "sepa" not in registry.providers and "IBAN" in registry.errors["sepa"]
    assert "pix" in registry.providers


def test_each_method_is_offered_only_in_its_country(app, client):
    for country in ("BR", "TH", "ID", "IN", "US", "VN"):
        page = client.get(f"/tiktok-coins?country={country}").get_data(as_text=True)
        for method, home in WHERE.items():
            assert (f'value="{method}"' in page) == (country == home), (country, method)
        assert 'value="sepa"' not in page
    registry = app.extensions["topup"]
    assert [p.id for p in registry.payment_methods("DE", "EUR")] == ["sandbox", "sepa"]
    assert [p.id for p in registry.payment_methods("BR", "USD")] == ["sandbox"]  # sandbox: anywhere


@pytest.mark.parametrize("method", sorted(CLASSES))
def test_without_a_notification_secret_these_methods_have_no_webhook(app, client, method):
    with pytest.raises(WebhookRejected, match="operator"):
        app.extensions["topup"].providers[method].parse_webhook(None)
    response = client.post(f"/webhooks/{method}", data=b"{}")
    assert response.status_code == 400 and "operator" in response.get_json()["reason"]


# --- the order page ---------------------------------------------------------------


def _assert_qr_page(page: str, action_code: str):
    assert '<svg role="img"' in page and "<title>QR code to pay" in page
    assert html.escape(action_code, quote=False) in page
    assert ' style="' not in page and "<script>" not in page


@pytest.mark.parametrize("method", sorted(WHERE))
def test_order_page_shows_the_qr_and_the_code(app, client, method):
    response = buy(client, country=WHERE[method], method=method)
    assert response.status_code == 303, response.get_data(as_text=True)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        public_id = response.headers["Location"].rsplit("/", 1)[1]
        order = orders.Order.get(orders.Order.public_id == public_id)
        action = order.latest_payment().action
        assert order.latest_payment().provider_ref == order_reference(order)
    _assert_qr_page(page, action["code"])
    assert f"Reference: {action['provider_ref']}" in page
    if method == "upi":
        assert f'href="{html.escape(action["url"])}"' in page and "in your app</a>" in page
    else:
        assert 'href="upi:' not in page


def test_order_page_for_a_sepa_transfer(app, client):
    order = place_order(client, country="DE", method="sepa")
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    _assert_qr_page(page, order_reference(order))
    assert "IBAN: DE89 3704 0044 0532 0130 00" in page and "SEPA bank transfer" in page


# --- the QR itself: rendered, then read back by an independent decoder ------------------


def _payloads():
    yield pix_payload(**SETTINGS["pix"], amount=Money(15050, "BRL"),
                      txid="TUABCDEFGHIJKLMN", one_time=True)
    yield promptpay_payload("0801234567", Money(25000, "THB"))
    yield with_amount(STATIC_QRIS, Money(1500000, "IDR"))
    yield upi_uri(vpa="topup.shop@okicici", name="Café & Co", amount=Money(9400, "INR"),
                  note="Order TU1", reference="TU1")
    yield epc_payload(name="Topup GmbH", iban="DE89370400440532013000", bic="COBADEFFXXX",
                      amount=Money(1999, "EUR"), remittance="TUABCDEFGHIJKLMN")


def decode_png(payload: str) -> list:
    """Draw payload as a PNG QR (segno) and read it back with an independent decoder."""
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m", boost_error=False).save(
        buffer, kind="png", scale=4, border=4, dark="#000", light="#fff")
    buffer.seek(0)
    return zxingcpp.read_barcodes(Image.open(buffer).convert("L"))


def decode_svg(svg: str) -> list:
    """Read back the SVG the order page shows."""
    return zxingcpp.read_barcodes(_svg_to_image(svg))


@pytest.mark.parametrize("payload", list(_payloads()))
def test_qr_decodes_back_to_the_payload(payload):
    results = decode_png(payload)
    assert [r.text for r in results] == [payload]
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode


def _svg_to_image(svg: str):
    """Rasterise the filter's own SVG (one stroked path of horizontal runs) so the
    decoder reads exactly what the order page shows."""
    size = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1)) // 4
    path = re.search(r'<path stroke="#000" d="([^"]+)"', svg).group(1)
    image = Image.new("L", (size * 4, size * 4), 255)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for command, a, b in re.findall(r"([MmHhVv])(-?[\d.]+)(?:[ ,](-?[\d.]+))?", path):
        a = float(a)
        if command == "M":
            x, y = a, float(b)
        elif command == "m":
            x, y = x + a, y + float(b)
        elif command == "h":
            row = int(y)
            draw.rectangle([x * 4, row * 4, (x + a) * 4 - 1, row * 4 + 3], fill=0)
            x += a
        else:
            raise AssertionError(f"unexpected path command {command}")
    return image


@pytest.mark.parametrize("payload", list(_payloads()))
def test_the_rendered_svg_decodes_back_to_the_payload(payload):
    results = decode_svg(qr_svg(payload))
    assert [r.text for r in results] == [payload]


def test_qr_svg_filter():
    svg = qr_svg("hello <world>", 'Pay "R$ 1" <now>')
    assert svg.startswith('<svg role="img"') and 'class="qr-code"' in svg
    assert '<title>Pay "R$ 1" &lt;now&gt;</title>' in svg  # escaped by segno
    assert "style" not in svg and "<script" not in svg and "hello" not in svg
    assert hasattr(svg, "__html__")
