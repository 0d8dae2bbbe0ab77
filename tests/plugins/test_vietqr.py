"""VietQR (NAPAS 247 EMV QR, Vietnam).

Published vectors: subiz/vietqr vietqr_test.go (TestQR: the static 970423 case,
CRC CBB4, and the 40,123 dong 970422 case, CRC D9C6) and its README example
(120,000 dong to 970415 / 0011001932418, CRC C15C).
"""
from __future__ import annotations

from datetime import datetime

import pytest

from topup.money import Money
from topup.payments import NotConfigured
from topup.web.qr import qr_svg
from topup_plugins.qr import emv
from topup_plugins.qr.common import order_reference
from topup_plugins.qr.vietqr import VietQR, vietqr_payload

from tests.conftest import place_order
from tests.plugins.test_qr import _assert_qr_page, decode_png, decode_svg

SETTINGS = {"bank_bin": "970415", "account": "0011001932418", "name": "Cửa hàng Topup"}

SUBIZ_STATIC = ("00020101021138540010A00000072701240006970423011000999999990208QRIBFTTA"
                "53037045802VN6304CBB4")
SUBIZ_AMOUNT = ("00020101021238570010A00000072701270006970422011300234579234420208QRIBFTTA"
                "53037045405401235802VN62200816test text string6304D9C6")
SUBIZ_README = ("00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA"
                "530370454061200005802VN62170813ung ho lu lut6304C15C")


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"], "vietqr": SETTINGS}
    return config


class FakeOrder:
    def __init__(self, amount, currency="VND", public_id="pub_ABCdef-123_xyz"):
        self.amount, self.currency, self.public_id = amount, currency, public_id
        self.locale, self.country = "en", None  # no country: written as English writes it
        self.expires_at = datetime(2030, 1, 2, 3, 4)


def test_matches_the_published_vectors():
    assert vietqr_payload(bank_bin="970423", account="0099999999") == SUBIZ_STATIC
    assert vietqr_payload(bank_bin="970422", account="0023457923442",
                          amount=Money(40123, "VND"), purpose="test text string") == SUBIZ_AMOUNT
    assert vietqr_payload(bank_bin="970415", account="0011001932418",
                          amount=Money(120000, "VND"), purpose="ủng hộ lũ lụt") == SUBIZ_README
    for vector in (SUBIZ_STATIC, SUBIZ_AMOUNT, SUBIZ_README):
        assert emv.crc_ok(vector)
        assert vector[-4:] == f"{emv.crc16(vector[:-4]):04X}"
        emv.parse_checked(vector)


def test_structure_of_an_order_payload():
    order = FakeOrder(79000)
    action = VietQR(SETTINGS).start(order, "/orders/x")
    items = emv.parse_checked(action.qr_payload)
    assert [tag for tag, _ in items] == ["00", "01", "38", "53", "54", "58", "62", "63"]
    tags = dict(items)
    assert tags["01"] == "12" and tags["53"] == "704" and tags["54"] == "79000"
    assert tags["58"] == "VN"
    account = emv.parse(tags["38"])
    assert account[0] == ("00", "A000000727") and account[2] == ("02", "QRIBFTTA")
    assert emv.parse(account[1][1]) == [("00", "970415"), ("01", "0011001932418")]
    assert emv.parse(tags["62"]) == [("08", order_reference(order))]
    assert action.kind == "qr" and action.code == action.qr_payload
    assert action.provider_ref == order_reference(order)
    assert order.public_id not in action.qr_payload
    text = "\n".join(action.instructions)
    assert "₫79,000" in text and "Cua hang Topup" in text
    assert f"Reference: {action.provider_ref}" in text and "2030-01-02 03:04 UTC" in text


def test_card_service_and_static_code():
    payload = vietqr_payload(bank_bin="970436", account="9704360000000000", service="card")
    tags = dict(emv.parse_checked(payload))
    assert tags["01"] == "11" and "54" not in tags and "62" not in tags
    assert dict(emv.parse(tags["38"]))["02"] == "QRIBFTTC"
    card = VietQR({**SETTINGS, "account": "9704 3600 0000 0000", "service": "card"})
    assert dict(emv.parse(dict(emv.parse_checked(
        card.start(FakeOrder(1000), "/").qr_payload))["38"]))["02"] == "QRIBFTTC"


def test_crc_is_checked():
    payload = VietQR(SETTINGS).start(FakeOrder(25000), "/").qr_payload
    assert emv.crc_ok(payload)
    broken = payload[:-1] + ("0" if payload[-1] != "0" else "1")
    assert not emv.crc_ok(broken)
    with pytest.raises(emv.EMVError, match="CRC"):
        emv.parse_checked(broken)


def test_amounts_are_whole_dong():
    for amount, text in ((1, "1"), (15000, "15000"), (1_500_000_000, "1500000000")):
        tags = dict(emv.parse_checked(vietqr_payload(bank_bin="970415", account="1",
                                                     amount=Money(amount, "VND"))))
        assert tags["54"] == text and "." not in tags["54"]
    with pytest.raises(ValueError):
        vietqr_payload(bank_bin="970415", account="1", amount=Money(0, "VND"))
    with pytest.raises(ValueError, match="VND"):
        vietqr_payload(bank_bin="970415", account="1", amount=Money(100, "USD"))
    provider = VietQR(SETTINGS)
    assert provider.accepts(Money(1, "VND")) and not provider.accepts(Money(0, "VND"))


def test_missing_settings_mean_not_configured():
    with pytest.raises(NotConfigured):
        VietQR({})
    for key in SETTINGS:
        with pytest.raises(NotConfigured):
            VietQR({k: v for k, v in SETTINGS.items() if k != key})
    with pytest.raises(NotConfigured):
        VietQR({**SETTINGS, "account": "  "})


@pytest.mark.parametrize("wrong", [{"bank_bin": "97041"}, {"bank_bin": "97041a"},
                                   {"account": "12345678901234567890"}, {"account": "ABC123"},
                                   {"service": "push"}])
def test_invalid_settings_are_value_errors(wrong):
    with pytest.raises(ValueError):
        VietQR({**SETTINGS, **wrong})


def test_offered_only_in_vietnam_in_dong(app, client):
    provider = app.extensions["topup"].providers["vietqr"]
    assert provider.serves("VN", "VND")
    assert not provider.serves("VN", "USD") and not provider.serves("TH", "VND")
    for country in ("VN", "US", "TH", "BR"):
        page = client.get(f"/tiktok-coins?country={country}").get_data(as_text=True)
        assert ('value="vietqr"' in page) == (country == "VN"), country


def test_unconfigured_it_is_quietly_left_out(config, tmp_path, monkeypatch):
    from topup import create_app

    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"] = {"sandbox_payment": config["PLUGINS"]["sandbox_payment"]}
    registry = create_app(config).extensions["topup"]
    assert "vietqr" in registry.not_configured and "vietqr" not in registry.providers
    assert not registry.errors


def test_order_page_shows_the_qr_and_the_code(app, client):
    order = place_order(client, country="VN", method="vietqr")
    assert order.currency == "VND"
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    payment = order.latest_payment()
    assert payment.provider_ref == order_reference(order)
    code = payment.action["code"]
    _assert_qr_page(page, code)
    assert f"Reference: {payment.provider_ref}" in page
    tags = dict(emv.parse_checked(code))
    assert tags["54"] == str(order.amount) and tags["58"] == "VN"

    assert [r.text for r in decode_svg(qr_svg(code))] == [code]


def test_qr_decodes_back_to_the_payload():
    payload = VietQR(SETTINGS).start(FakeOrder(250000), "/").qr_payload
    assert [r.text for r in decode_png(payload)] == [payload]
