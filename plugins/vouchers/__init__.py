"""Voucher stock delivery (backend "vouchers"): the operator imports codes
bought in bulk; each paid order gets one, shown to the buyer. Codes are
encrypted at rest. Settings: key (or keys), low_stock, alert_email.
See docs/backends/vouchers.md."""
from __future__ import annotations

from topup import hookimpl

from topup_plugins.vouchers import stock
from topup_plugins.vouchers.backend import VoucherDelivery
from topup_plugins.vouchers.cli import loaded_backend, vouchers
from topup_plugins.vouchers.models import VoucherCode, VoucherStockAlert


@hookimpl
def register_delivery_backends():
    return [VoucherDelivery]


@hookimpl
def register_models():
    return [VoucherCode, VoucherStockAlert]


@hookimpl
def register_commands(cli):
    cli.add_command(vouchers)


@hookimpl
def housekeeping():
    backend = loaded_backend()
    if backend is not None:  # not set up: `topup plugins` already says so
        stock.check_low_stock(backend.low_stock, backend.alert_email)
