"""Operator webhook delivery: topup POSTs a signed JSON request per paid order
to the operator's own fulfilment system, which answers with a reference (or
202 and a signed callback later). For shops that credit accounts themselves.

Settings (PLUGINS["operator_webhook"]):
    url              where to POST; https, or plain http to a loopback host only
    secret           signing secret, e.g. {"$env": "OPERATOR_WEBHOOK_SECRET"}
    timeout_seconds  optional, default 10 (at most 60)
    callback_secret  optional secret the receiver signs callbacks with; default secret

The receiver's contract is in docs/backends/operator-webhook.md.
"""
from topup import hookimpl
from topup_plugins.operator_webhook.backend import OperatorWebhook
from topup_plugins.operator_webhook.callback import bp
from topup_plugins.operator_webhook.model import OperatorWebhookResult

__all__ = ["register_blueprints", "register_delivery_backends", "register_models"]


@hookimpl
def register_delivery_backends():
    return [OperatorWebhook]


@hookimpl
def register_models():
    return [OperatorWebhookResult]


@hookimpl
def register_blueprints():
    return [bp]
