"""topup.web.app: Flask's classes minus per-request costs; each must answer as
Flask's and werkzeug's own would."""
from __future__ import annotations

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest

from topup.web.app import Request


def test_cookies_are_what_werkzeug_reads():
    for header in (None, "", "session=abc.def; lang=pt_BR", 'a="quoted; value"; b=2; a=3'):
        environ = EnvironBuilder(headers={"Cookie": header} if header is not None else {}
                                 ).get_environ()
        ours, theirs = Request(environ).cookies, WerkzeugRequest(environ).cookies
        assert list(ours.items(multi=True)) == list(theirs.items(multi=True)), header


def test_template_globals_are_the_environment_s_under_the_template_s_own(app):
    env = app.jinja_env
    assert "csrf_token" in env.globals and "asset" in env.globals  # Flask-WTF's, ours
    own = env.from_string("{{ shout }}|{{ languages['en'] }}", globals={"shout": "hi"})
    assert type(own.globals) is dict
    with app.test_request_context("/"):
        assert own.render() == "hi|English"
        assert env.from_string("{{ shout }}").render() == ""  # the template's own stays its own
    assert "shout" not in env.globals
