"""Stripe Checkout: the buyer pays on Stripe's hosted page; Stripe's signed
webhooks (re-fetched from the API before they are trusted) confirm the payment.

Settings, under PLUGINS["stripe_checkout"]:

    "stripe_checkout": {
        "secret_key": {"$env": "STRIPE_SECRET_KEY"},          # sk_live_... / sk_test_... / rk_...
        "webhook_secret": {"$env": "STRIPE_WEBHOOK_SECRET"},  # whsec_... of the endpoint below
        # "api_base": "http://127.0.0.1:12111",               # tests only: a local Stripe stand-in
    }

Point a Stripe webhook endpoint at https://<shop>/webhooks/stripe with the events
checkout.session.completed, checkout.session.async_payment_succeeded,
checkout.session.async_payment_failed and checkout.session.expired.
"""
from topup_plugins.stripe_checkout.provider import StripeCheckout, register_payment_providers

__all__ = ["StripeCheckout", "register_payment_providers"]
