"""Who is signed in: server-side sessions for operators (and buyers who sign in).

The Flask session cookie carries only a random token; the SignInSession row
(keyed by the token's SHA-256) is the truth, so signing out, an idle or an
absolute timeout ends the session for every copy of the cookie. Signing in
clears the cookie's old contents and issues a new token (no fixation).

Ways in: a one-time link from `topup admin-link` (bootstrap, no stored
passwords), or OpenID Connect (topup.web.oidc).
"""
from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from flask import (Blueprint, abort, current_app, g, redirect, render_template, request,
                   session, url_for)

from topup.db import database
from topup.models import SignInLink, SignInSession, utcnow
from topup.web.limits import limited

bp = Blueprint("auth", __name__)

SESSION_KEY = "sid"
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


# Sign-in attempts share one budget per client address, so sign-in links
# cannot be guessed at speed (over it: 429 with a message).
limit_sign_in = limited("sign-in", "SIGN_IN_RATE_LIMIT")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(subject: str, role: str, method: str) -> SignInSession:
    """Sign `subject` in: a fresh token, the old cookie contents dropped."""
    end_session()
    token = secrets.token_urlsafe(32)
    row = SignInSession.create(token_hash=_hash(token), subject=subject, role=role, method=method)
    session.clear()
    session[SESSION_KEY] = token
    session.permanent = False  # a browser session cookie; the server enforces the timeouts
    g.sign_in = row
    return row


def current_session() -> SignInSession | None:
    """The live session of this request, or None (expired ones are deleted)."""
    if "sign_in" in g:
        return g.sign_in
    g.sign_in = None
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        return None
    row = SignInSession.get_or_none(SignInSession.token_hash == _hash(token))
    if row is None:
        session.pop(SESSION_KEY, None)
        return None
    now, config = utcnow(), current_app.config
    if (now - row.last_seen_at > timedelta(seconds=config["ADMIN_SESSION_IDLE_SECONDS"])
            or now - row.created_at > timedelta(seconds=config["ADMIN_SESSION_MAX_SECONDS"])):
        row.delete_instance()
        session.pop(SESSION_KEY, None)
        return None
    if now - row.last_seen_at > TOUCH_EVERY:
        SignInSession.update(last_seen_at=now).where(SignInSession.id == row.id).execute()
    g.sign_in = row
    return row


def end_session() -> None:
    token = session.pop(SESSION_KEY, None)
    if isinstance(token, str):
        SignInSession.delete().where(SignInSession.token_hash == _hash(token)).execute()
    g.sign_in = None


def current_operator() -> str | None:
    """The signed-in operator's subject (e-mail or "sub:..."), if any. An
    identity-provider sign-in must still be on ADMIN_OPERATORS: taking someone
    off the list ends their admin access at their next click. (A one-time link
    was made on the server by someone with a shell there: it is its own proof.)"""
    row = current_session()
    if row is None or row.role != "operator":
        return None
    if row.method == "oidc" and not is_operator(row.subject):
        return None
    return row.subject


def is_operator(subject: str) -> bool:
    """Whether config ADMIN_OPERATORS lets subject in (e-mails compared case-insensitively)."""
    allowed = {entry.strip().lower() for entry in current_app.config["ADMIN_OPERATORS"]}
    return subject.strip().lower() in allowed


def operator_required(view):
    """Views under /admin: signed-in operators only; others go to the sign-in page."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_operator() is None:
            if request.method != "GET" or request.htmx:
                abort(401, "Your sign-in has ended. Sign in again.")
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def safe_next(target: str | None) -> str:
    """Only a local /admin path may follow sign-in (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.dashboard")


def create_link(subject: str, seconds: int | None = None) -> str:
    """A one-time sign-in token for subject, valid ADMIN_LINK_SECONDS."""
    token = secrets.token_urlsafe(32)
    seconds = seconds or current_app.config["ADMIN_LINK_SECONDS"]
    SignInLink.create(token_hash=_hash(token), subject=subject.strip(),
                      expires_at=utcnow() + timedelta(seconds=seconds))
    return token


# --- pages ----------------------------------------------------------------------


@bp.get("/admin/sign-in")
def sign_in():
    providers = current_app.extensions.get("topup.oidc_providers", {})
    return render_template("auth/sign_in.html", providers=providers,
                           next=safe_next(request.args.get("next")))


@bp.get("/admin/link/<token>")
@limit_sign_in
def link(token):
    """Show the link's confirm button: a GET never signs anyone in (mail
    scanners and link previews open URLs)."""
    found = _usable_link(token)
    return render_template("auth/link.html", token=token, subject=found.subject)


@bp.post("/admin/link/<token>")
@limit_sign_in
def use_link(token):
    with database.atomic():
        found = _usable_link(token)
        used = (SignInLink.update(used_at=utcnow())
                .where(SignInLink.id == found.id, SignInLink.used_at.is_null()).execute())
        if used != 1:
            abort(410, "This sign-in link was already used. Ask for a new one: topup admin-link.")
    start_session(found.subject, role="operator", method="link")
    return redirect(url_for("admin.dashboard"), 303)


def _usable_link(token: str) -> SignInLink:
    found = SignInLink.get_or_none(SignInLink.token_hash == _hash(token[:100]))
    if found is None:
        abort(404, "This sign-in link is not valid. Ask for a new one: topup admin-link.")
    if found.used_at is not None:
        abort(410, "This sign-in link was already used. Ask for a new one: topup admin-link.")
    if found.expires_at < utcnow():
        abort(410, "This sign-in link has expired. Ask for a new one: topup admin-link.")
    return found


@bp.post("/sign-out")
def sign_out():
    end_session()
    session.clear()
    return redirect(url_for("shop.index"), 303)
