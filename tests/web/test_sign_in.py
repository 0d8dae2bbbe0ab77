"""Operator sessions: one-time admin links, server-side sessions that rotate
on sign-in, end on sign-out everywhere, and time out (idle and absolute)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from topup.cli import main
from topup.models import SignInLink, SignInSession, utcnow

from tests.conftest import CSRF


def admin_link(runner, email="ops@example.com", *args) -> str:
    result = runner.invoke(main, ["admin-link", "--email", email, *args])
    assert result.exit_code == 0, result.output
    url = result.output.splitlines()[0]
    assert url.startswith("http://127.0.0.1:8080/admin/link/")
    return url.removeprefix("http://127.0.0.1:8080")


def use(client, path):
    page = client.get(path)
    assert page.status_code == 200
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    return client.post(path, data={"csrf_token": token})


def sign_out(client):
    token = CSRF.search(client.get("/admin/").get_data(as_text=True)).group(1)
    return client.post("/sign-out", data={"csrf_token": token})


def sid(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("sid")


def test_admin_needs_a_sign_in(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/sign-in?next=/admin/"
    page = client.get("/admin/sign-in").get_data(as_text=True)
    assert "topup admin-link" in page
    assert client.get("/admin/", headers={"HX-Request": "true"}).status_code == 401


def test_an_admin_link_signs_in_once_and_only_by_post(client, runner):
    path = admin_link(runner)
    confirm = client.get(path)
    assert "Sign in to the admin as ops@example.com?" in confirm.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302  # a GET signed nobody in
    done = use(client, path)
    assert done.status_code == 303 and done.headers["Location"] == "/admin/"
    assert "Signed in as ops@example.com" in client.get("/admin/").get_data(as_text=True)
    [row] = SignInSession.select()
    assert (row.subject, row.role, row.method) == ("ops@example.com", "operator", "link")
    assert row.token_hash != sid(client)  # only a hash is stored
    again = client.get(path)
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)


def test_expired_and_unknown_links_are_refused(client, runner):
    path = admin_link(runner, "ops@example.com", "--minutes", "1")
    SignInLink.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    expired = client.get(path)
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert client.get("/admin/link/not-a-real-token").status_code == 404
    assert client.get("/admin/").status_code == 302


def test_sign_in_rotates_the_session_and_sign_out_ends_it_everywhere(app, client, runner):
    with client.session_transaction() as session:
        session["sid"] = "planted-by-an-attacker"
        session["other"] = "old contents"
    use(client, admin_link(runner))
    with client.session_transaction() as session:
        assert session["sid"] != "planted-by-an-attacker" and "other" not in session
        stolen = dict(session)
    copy = app.test_client()
    with copy.session_transaction() as session:
        session.update(stolen)
    assert copy.get("/admin/").status_code == 200  # the same cookie works...
    assert sign_out(client).status_code == 303
    assert SignInSession.select().count() == 0
    assert copy.get("/admin/").status_code == 302  # ...until it is signed out, server side
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("field, age", [("last_seen_at", "ADMIN_SESSION_IDLE_SECONDS"),
                                        ("created_at", "ADMIN_SESSION_MAX_SECONDS")])
def test_idle_and_absolute_timeouts(app, client, runner, field, age):
    use(client, admin_link(runner))
    assert client.get("/admin/").status_code == 200
    too_old = utcnow() - timedelta(seconds=app.config[age] + 1)
    SignInSession.update(**{field: too_old}).execute()
    assert client.get("/admin/").status_code == 302
    assert SignInSession.select().count() == 0


def test_activity_keeps_an_idle_session_alive(app, client, runner):
    use(client, admin_link(runner))
    almost = utcnow() - timedelta(seconds=app.config["ADMIN_SESSION_IDLE_SECONDS"] - 5)
    SignInSession.update(last_seen_at=almost).execute()
    assert client.get("/admin/").status_code == 200
    assert SignInSession.get().last_seen_at > almost + timedelta(seconds=60)


@pytest.mark.parametrize("target, result", [
    ("/admin/orders?status=paid", "/admin/orders?status=paid"),
    ("https://evil.example/admin", "/admin/"), ("//evil.example/admin", "/admin/"),
    ("/admin\\@evil.example", "/admin/"), ("/orders/x", "/admin/"), (None, "/admin/"),
])
def test_sign_in_only_ever_returns_to_an_admin_page(app, target, result):
    from topup.web.auth import safe_next

    with app.test_request_context():
        assert safe_next(target) == result


def test_admin_link_refuses_a_long_life(runner):
    result = runner.invoke(main, ["admin-link", "--email", "ops@example.com", "--minutes", "600"])
    assert result.exit_code == 2 and SignInLink.select().count() == 0
