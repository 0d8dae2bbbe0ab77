"""The web layer: blueprints, and what every response shares."""
from __future__ import annotations

from flask import abort, make_response, render_template, request
from flask_babel import get_locale
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from topup import ROOT
from topup.web.assets import Assets

SUPPORTED_LOCALES = ["en"]

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    "object-src 'none'",
])


def select_locale() -> str:
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or "en"


def render_for_htmx(partial: str, page: str, status: int = 200, **context):
    """One template, two uses: htmx gets the partial, everyone else the page that includes it."""
    response = make_response(render_template(partial if request.htmx else page, **context), status)
    response.vary.add("HX-Request")
    return response


def init_app(app) -> None:
    from topup.web import admin, auth, limits, oidc, ops, orders, qr, shop, webhooks

    limits.init_app(app)

    assets = Assets(ROOT / "static")
    app.register_blueprint(assets.blueprint)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    oidc.init_app(app)  # sign-in with identity providers, and the buyer's /account
    app.register_blueprint(shop.bp)  # last: its /<slug> route is the catch-all
    app.extensions["csrf"].exempt(webhooks.bp)

    @app.context_processor
    def globals_for_templates():
        return {"asset": assets.url, "shop_name": app.config["SHOP_NAME"],
                "locale": str(get_locale())}

    app.add_template_filter(qr.qr_svg)

    @app.template_filter("money")
    def money_filter(money):
        return money.format(str(get_locale()))

    @app.before_request
    def refuse_nul_bytes():
        """NUL is never meaningful in our URLs or forms, and Postgres refuses it in text."""
        if "\x00" in request.path or any("\x00" in value for value in request.args.values()):
            abort(400, "The address contains characters we can't accept.")
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") and any(
                "\x00" in value for value in request.form.values()):
            abort(400, "The form contains characters we can't accept.")

    from topup.web.compression import compress_response

    app.after_request(compress_response)

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")  # order URLs are secrets
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template(
            "errors/error.html", title="This form has expired",
            message="For your safety, forms expire. Go back, reload the page and try again."), 400

    @app.errorhandler(429)
    def too_many_requests(error):
        message = ("You're going a bit fast. Please wait a minute, then try again.")
        if request.htmx and request.endpoint == "shop.account":  # shown under the username field
            return render_template("shop/_account.html", account=None,
                                   errors={"account": message}), 429
        return render_template("errors/error.html", title="Too many requests",
                               message=message), 429

    @app.errorhandler(HTTPException)
    def http_error(error):
        if request.path.startswith("/webhooks/"):
            return {"error": error.name}, error.code
        return render_template("errors/error.html", title=error.name,
                               message=error.description), error.code
