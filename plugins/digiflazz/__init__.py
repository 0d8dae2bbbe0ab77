"""Digiflazz (Indonesian reseller) delivery: buys each order's top-up through
Digiflazz's buyer API and confirms it by signed callback or status check.

Settings (PLUGINS["digiflazz"]):
    username        the API username from Digiflazz's "Atur Koneksi > API"
    api_key         the development or production key, e.g. {"$env": "DIGIFLAZZ_API_KEY"}
    skus            {"<product slug>:<package quantity>": "<buyer_sku_code>"}; packages
                    without one are not offered
    webhook_secret  optional: the webhook's secret; callbacks are refused without it
    testing         optional, default false: send "testing": true (development mode)
    base_url        optional, default https://api.digiflazz.com/v1
    callback_url    optional: sent as cb_url (only if the static webhook is not enough)
    timeout_seconds optional, default 30, per request
    status_check_interval_seconds  optional, default 60: Digiflazz asks for a minute
                    between requests about the same transaction

See docs/backends/digiflazz.md.
"""
from topup import hookimpl
from topup_plugins.digiflazz.backend import DigiflazzDelivery
from topup_plugins.digiflazz.callback import bp
from topup_plugins.digiflazz.models import DigiflazzTransaction


@hookimpl
def register_delivery_backends():
    return [DigiflazzDelivery]


@hookimpl
def register_models():
    return [DigiflazzTransaction]


@hookimpl
def register_blueprints():
    return [bp]
