"""Sign-in with OpenID Connect, through authlib's Flask client.

The authorization-code flow with PKCE (S256), state and nonce. The ID token
is checked for signature, issuer, audience (our client_id), nonce and expiry;
the e-mail comes from userinfo. Whoever ADMIN_OPERATORS lists gets an operator
session; anyone else a buyer session, which only shows their own orders
(topup.web.account) — except that asking for the admin without being listed
is refused outright, so no one mistakes a buyer session for admin access.

Starting and finishing a sign-in count against the sign-in rate limit
(SIGN_IN_RATE_LIMIT), which admin links share.

Configure OIDC_PROVIDERS = {"id": {"label", "server_metadata_url", "client_id",
"client_secret" (or {"$env": NAME}), "scope"}}; see docs/sign-in.md.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Blueprint, abort, current_app, redirect, request, session, url_for
from flask_babel import gettext as _
from joserfc.errors import JoseError

from topup.config import resolve_secrets
from topup.web.auth import is_operator, limit_sign_in, safe_next, start_session
from topup.web.security import CONTENT_SECURITY_POLICY

log = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__)

DEFAULT_SCOPE = "openid email profile"
SETTINGS = {"label", "server_metadata_url", "client_id", "client_secret", "scope"}
PROVIDER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
HTTP_TIMEOUT_SECONDS = 10
PENDING_SECONDS = 10 * 60  # how long a started sign-in may wait for its callback
LEEWAY_SECONDS = 60  # clock skew allowed on the ID token's exp and iat
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_SUBJECT = 255  # SignInSession.subject is a CharField


@dataclass(frozen=True)
class Provider:
    """One configured identity provider, as the sign-in pages list it."""
    id: str
    label: str
    server_metadata_url: str
    client_id: str

    def client(self):
        return current_app.extensions["topup.oauth"].create_client(_client_name(self.id))

    def origins(self) -> set[str]:
        """Where its sign-in pages live (for CSP form-action): the metadata
        URL's origin, and the authorization endpoint's once it is known."""
        found = {_origin(self.server_metadata_url)}
        endpoint = self.client().server_metadata.get("authorization_endpoint")
        if endpoint:
            found.add(_origin(endpoint))
        return found


class SignInFailed(Exception):
    """Why a callback signs no one in: an HTTP status, a message for the person,
    and the reason for the log (never a code, token or secret)."""
    def __init__(self, status: int, message: str, reason: str):
        super().__init__(reason)
        self.status, self.message = status, message


def init_app(app) -> None:
    """Read OIDC_PROVIDERS, register each with authlib, and add the sign-in
    and account routes. A bad setting stops the app at start, not at sign-in."""
    from topup.web import account

    oauth = OAuth(app)
    providers = {}
    for provider_id, settings in resolve_secrets(app.config.get("OIDC_PROVIDERS") or {}).items():
        provider = _provider(provider_id, settings)
        oauth.register(
            _client_name(provider_id), client_id=provider.client_id,
            client_secret=settings["client_secret"],
            server_metadata_url=provider.server_metadata_url,
            client_kwargs={"scope": settings.get("scope", DEFAULT_SCOPE),
                           "code_challenge_method": "S256",
                           "default_timeout": HTTP_TIMEOUT_SECONDS})
        providers[provider_id] = provider
    app.extensions["topup.oauth"] = oauth
    app.extensions["topup.oidc_providers"] = providers
    app.register_blueprint(bp)
    app.register_blueprint(account.bp)
    app.after_request(_let_sign_in_forms_reach_providers)


def _client_name(provider_id: str) -> str:
    # Prefixed: authlib also reads "<NAME>_CLIENT_ID"-style keys from app.config.
    return f"oidc_{provider_id}"


def _provider(provider_id: str, settings) -> Provider:
    where = f"OIDC_PROVIDERS[{provider_id!r}]"
    if not isinstance(provider_id, str) or not PROVIDER_ID.fullmatch(provider_id):
        raise ValueError(f"{where}: an id is 1-32 of a-z, 0-9, '_' and '-' (it is part of the "
                         "redirect URI)")
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be a dict of settings")
    unknown = set(settings) - SETTINGS
    if unknown:
        raise ValueError(f"{where}: unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
    for key in ("server_metadata_url", "client_id", "client_secret"):
        if not isinstance(settings.get(key), str) or not settings[key]:
            raise ValueError(f"{where}: {key} is required")
    url = urlsplit(settings["server_metadata_url"])
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname in LOOPBACK):
        raise ValueError(f"{where}: server_metadata_url must be https:// (http only on loopback)")
    if "openid" not in str(settings.get("scope", DEFAULT_SCOPE)).split():
        raise ValueError(f"{where}: scope must include 'openid'")
    return Provider(id=provider_id, label=str(settings.get("label") or provider_id),
                    server_metadata_url=settings["server_metadata_url"],
                    client_id=settings["client_id"])


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _provider_or_404(provider_id: str) -> Provider:
    provider = current_app.extensions["topup.oidc_providers"].get(provider_id)
    if provider is None:
        abort(404, _("There is no such sign-in provider."))
    return provider


def _callback_url(provider_id: str) -> str:
    """The redirect URI to register at the provider: <PUBLIC_URL>/sign-in/<id>/callback."""
    public = current_app.config.get("PUBLIC_URL")
    if public:
        return public.rstrip("/") + url_for("oidc.callback", provider=provider_id)
    return url_for("oidc.callback", provider=provider_id, _external=True)


def _wants_admin(raw: str | None) -> bool:
    """Whether the form asked for an /admin page (the operator sign-in form)."""
    return bool(raw) and raw.startswith("/admin")


# --- the flow -------------------------------------------------------------------


@bp.post("/sign-in/<provider>")
@limit_sign_in
def login(provider):
    """Start the authorization-code flow (the form is CSRF-protected, so no
    other site can start a sign-in in someone's browser). In the sign-in
    budget: each start may fetch the provider's metadata."""
    found = _provider_or_404(provider)
    client = found.client()
    redirect_uri = _callback_url(found.id)
    try:
        started = client.create_authorization_url(redirect_uri)
    except (requests.RequestException, ValueError, RuntimeError) as error:  # metadata unusable
        log.warning("oidc %s: cannot start sign-in: %s", found.id, type(error).__name__)
        abort(502, _unreachable(found))
    url = started.pop("url")
    # Only the newest sign-in attempt counts: old ones would only grow the cookie.
    for key in [key for key in session if key.startswith("_state_oidc_")]:
        session.pop(key)
    raw_next = request.form.get("next")
    admin = _wants_admin(raw_next)
    client.save_authorize_data(
        redirect_uri=redirect_uri, admin=admin, started=time.time(),
        next=safe_next(raw_next) if admin else url_for("account.show"), **started)
    return redirect(url, 303)


@bp.get("/sign-in/<provider>/callback")
@limit_sign_in
def callback(provider):
    """Finish the flow. In the sign-in budget too: a replayed session cookie
    keeps its pending state, and each callback may ask the provider for a token."""
    found = _provider_or_404(provider)
    try:
        subject, pending = _finish(found)
    except SignInFailed as failed:
        log.warning("oidc %s: sign-in refused: %s", found.id, failed)
        abort(failed.status, failed.message)
    target = pending["next"]
    if is_operator(subject):
        start_session(subject, role="operator", method="oidc")
        return redirect(target, 303)
    if pending["admin"]:
        log.warning("oidc %s: %s is not in ADMIN_OPERATORS", found.id, subject)
        abort(403, _("This account may not use the admin. Ask the shop's owner to add it to "
                     "ADMIN_OPERATORS, or sign in with another account."))
    start_session(subject, role="buyer", method="oidc")
    return redirect(target, 303)


def _finish(provider: Provider) -> tuple[str, dict]:
    """Check the callback, exchange the code and validate what comes back.
    Returns (subject, what login() saved); raises SignInFailed."""
    client = provider.client()
    label = provider.label
    error = request.args.get("error")
    if error:
        client.framework.clear_state_data(session, request.args.get("state"))
        if error == "access_denied":
            raise SignInFailed(400, _("Sign-in was cancelled at %(provider)s. Start the sign-in "
                                      "again.", provider=label), "access_denied")
        raise SignInFailed(400, _("%(provider)s did not sign you in. Start the sign-in again.",
                                  provider=label), f"provider error {error[:64]!r}")
    pending = client.framework.get_state_data(session, request.args.get("state"))
    if (not pending or not request.args.get("code")
            or time.time() - pending.get("started", 0) > PENDING_SECONDS):
        client.framework.clear_state_data(session, request.args.get("state"))
        raise SignInFailed(400, _("This sign-in has expired or was already used. Start the "
                                  "sign-in again."), "unknown, used or expired state")
    try:
        issuer = client.load_server_metadata().get("issuer")
    except (requests.RequestException, ValueError) as unreachable:
        raise SignInFailed(502, _unreachable(provider),
                           f"metadata failed: {type(unreachable).__name__}") from None
    _check_response_issuer(client, issuer, provider)
    try:
        token = client.authorize_access_token(
            leeway=LEEWAY_SECONDS,
            claims_options={"iss": {"essential": True, "value": issuer},
                            "aud": {"essential": True, "value": provider.client_id}})
    except OAuthError as refused:  # the token endpoint said no: a used or stolen code
        raise SignInFailed(400, _("%(provider)s refused this sign-in. Start the sign-in again.",
                                  provider=label),
                           f"token request refused: {refused.error}") from None
    except requests.RequestException as unreachable:
        raise SignInFailed(502, _unreachable(provider),
                           f"token request failed: {type(unreachable).__name__}") from None
    except (JoseError, ValueError) as invalid:  # signature, iss, aud, nonce, exp, or garbled
        raise SignInFailed(400, _invalid(provider), f"ID token invalid: {invalid}") from None
    if "id_token" not in token or "userinfo" not in token:
        raise SignInFailed(400, _invalid(provider), "no ID token in the token response")
    claims = dict(token["userinfo"])
    claims.update(_userinfo(client, token, claims["sub"], provider))
    return _subject(claims, provider), pending


def _unreachable(provider: Provider) -> str:
    return _("We couldn't reach %(provider)s to sign you in. Try again in a minute.",
             provider=provider.label)


def _invalid(provider: Provider) -> str:
    return _("The answer from %(provider)s was not valid. Start the sign-in again.",
             provider=provider.label)


def _check_response_issuer(client, issuer, provider) -> None:
    """RFC 9207: a provider that names itself in the callback must name itself
    (a code from another provider, swapped in, is refused before use)."""
    given = request.args.get("iss")
    announced = client.server_metadata.get("authorization_response_iss_parameter_supported")
    if (given is not None or announced) and given != issuer:
        client.framework.clear_state_data(session, request.args.get("state"))
        raise SignInFailed(400, _("This answer did not come from %(provider)s. Start the sign-in "
                                  "again.", provider=provider.label),
                           "callback iss does not match the issuer")


def _userinfo(client, token, sub, provider) -> dict:
    """The userinfo claims (e-mail); they must be about the ID token's subject."""
    if not client.server_metadata.get("userinfo_endpoint"):
        return {}
    try:
        info = dict(client.userinfo(token=token))
    except (requests.RequestException, ValueError) as failed:
        raise SignInFailed(502, _unreachable(provider),
                           f"userinfo failed: {type(failed).__name__}") from None
    if info.get("sub") != sub:
        raise SignInFailed(400, _invalid(provider), "userinfo is about another subject")
    return info


def _subject(claims: dict, provider: Provider) -> str:
    """The verified e-mail address, or "sub:<subject>" when there is none."""
    email = claims.get("email")
    if isinstance(email, str) and email.strip():
        if claims.get("email_verified") in (False, "false"):
            raise SignInFailed(403, _("%(provider)s has not verified your e-mail address. Verify "
                                      "it there, then sign in again.", provider=provider.label),
                               "e-mail not verified")
        subject = email.strip()
    else:
        subject = f"sub:{claims['sub']}"
    if len(subject) > MAX_SUBJECT:
        raise SignInFailed(400, _("Your account's e-mail address is too long for this shop."),
                           "subject too long")
    return subject


# --- CSP ------------------------------------------------------------------------


def _let_sign_in_forms_reach_providers(response):
    """Browsers apply CSP form-action to the redirect that follows a form post:
    the pages with sign-in forms must also allow the providers' origins."""
    providers = current_app.extensions["topup.oidc_providers"]
    if not providers or request.endpoint not in ("auth.sign_in", "account.sign_in"):
        return response
    origins = sorted(set().union(*(provider.origins() for provider in providers.values())))
    policy = response.headers.get("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["Content-Security-Policy"] = policy.replace(
        "form-action 'self'", "form-action 'self' " + " ".join(origins))
    return response
