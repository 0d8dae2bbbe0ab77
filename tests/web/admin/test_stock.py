"""The stock page: voucher counts per package, and a CSV upload that imports
codes exactly as `topup vouchers import` does; or a plain word when the
vouchers plugin is off or has no key."""
from __future__ import annotations

import io
import re

import pytest
from cryptography.fernet import Fernet

from topup.models import Package, Product
from topup_plugins.vouchers.backend import allocate
from topup_plugins.vouchers.models import VoucherCode

from tests.web.admin.conftest import new_order, post

KEY = Fernet.generate_key().decode()


@pytest.fixture
def with_key(config):
    config["PLUGINS"] = {**config["PLUGINS"], "vouchers": {"key": KEY, "low_stock": 3}}


@pytest.fixture
def voucher_product(app):
    Product.update(delivery_backend="vouchers").where(Product.slug == "tiktok-coins").execute()


def upload(client, text: str | bytes, quantity: int = 70, batch: str = "", name="codes.csv"):
    data = text if isinstance(text, bytes) else text.encode()
    return post(client, "/admin/stock/import", {
        "package": str(Package.get(Package.quantity == quantity).id), "batch": batch,
        "file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def levels(client) -> dict:
    page = client.get("/admin/stock").get_data(as_text=True)
    return {int(q): (int(free), int(allocated), level) for q, free, allocated, level in re.findall(
        r'<td class="num">(\d+)</td>\s*<td class="num free">(\d+)</td>'
        r'<td class="num allocated">(\d+)</td>\s*<td>(?:<span class="bad">)?(\w+)', page)}


def test_upload_imports_codes_and_the_counts_follow(with_key, operator_client, voucher_product,
                                                     app):
    assert levels(operator_client)[70] == (0, 0, "low")
    response = upload(operator_client, "code\nAAAA-1111\nBBBB-2222\n\nCCCC-3333\naaaa1111\n",
                      batch="INV-7")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Imported 3 code(s) into TikTok Coins 70; refused 1 duplicate(s)." in page
    assert "line 6: repeats line 2" in page
    seventy = Package.get(Package.quantity == 70)
    codes = list(VoucherCode.select().where(VoucherCode.package == seventy))
    assert len(codes) == 3 and {code.batch for code in codes} == {"INV-7"}
    vault = app.extensions["topup"].backends["vouchers"].vault
    assert {vault.decrypt(code.ciphertext) for code in codes} == {"AAAA-1111", "BBBB-2222",
                                                                  "CCCC-3333"}
    assert not any("AAAA-1111" in code.ciphertext for code in codes)  # stored encrypted
    with app.app_context():
        allocate(new_order(app))
    assert levels(operator_client)[70] == (2, 1, "low")

    again = upload(operator_client, "BBBB-2222\nDDDD-4444\nEEEE-5555\n")
    assert "Imported 2 code(s)" in again.get_data(as_text=True)
    assert "line 1: already imported" in again.get_data(as_text=True)
    assert levels(operator_client)[70] == (4, 1, "ok")


def test_a_bad_file_imports_nothing(with_key, operator_client, voucher_product):
    response = upload(operator_client, "GOOD-1\n" + "X" * 201 + "\nbad\x07code\n")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing imported." in page
    assert "line 2: longer than 200 characters" in page
    assert "line 3: holds control characters" in page
    assert VoucherCode.select().count() == 0
    latin1 = upload(operator_client, "CAFÉ-1\n".encode("latin-1"))
    assert latin1.status_code == 422
    assert "the file is not UTF-8 text" in latin1.get_data(as_text=True)
    empty = upload(operator_client, "code\n\n")
    assert empty.status_code == 422 and "The file holds no codes." in empty.get_data(as_text=True)


def test_the_form_must_be_complete(with_key, operator_client, voucher_product):
    no_file = post(operator_client, "/admin/stock/import", {"package": "2"},
                   content_type="multipart/form-data")
    assert no_file.status_code == 422
    assert "Choose a CSV file of codes." in no_file.get_data(as_text=True)
    no_package = post(operator_client, "/admin/stock/import", {
        "package": "999", "file": (io.BytesIO(b"A-1\n"), "c.csv")},
        content_type="multipart/form-data")
    assert no_package.status_code == 422
    assert "Choose the package these codes are for." in no_package.get_data(as_text=True)
    long_batch = upload(operator_client, "A-1\n", batch="b" * 101)
    assert long_batch.status_code == 422
    assert VoucherCode.select().count() == 0


def test_without_a_key_nothing_can_be_imported(operator_client):
    page = operator_client.get("/admin/stock").get_data(as_text=True)
    assert "The vouchers plugin has no key" in page
    response = upload(operator_client, "A-1\n")
    assert response.status_code == 422
    assert 'PLUGINS["vouchers"]["key"]' in response.get_data(as_text=True).replace("&#34;", '"')


@pytest.fixture
def disabled(config):
    config["DISABLED_PLUGINS"] = ["vouchers"]


def test_disabled_plugin(disabled, operator_client):
    page = operator_client.get("/admin/stock")
    assert page.status_code == 200
    assert "The vouchers plugin is disabled" in page.get_data(as_text=True)
    assert upload(operator_client, "A-1\n").status_code == 404
