"""The floor under topup's pages, for bench/throughput: bench/hello.py's bare
Flask app with what every topup page needs added, one thing at a time, using
the libraries topup uses and none of topup's code, served as bench/hello.py
serves it. Prints its URL, then serves.

    python bench/stack.py --adds template|babel|csrf|token

Each level has everything of the levels before it:
  template  a one-line Jinja template (loaded once, as Flask keeps it)
  babel     Flask-Babel, and the template's word translated (gettext)
  csrf      Flask-WTF's CSRFProtect, whose hook runs on every request (GETs
            pass), and the secret key it needs: with one, Flask opens a
            session (from the cookie, here none) on every request
  token     the template carries a CSRF token for a new visitor, as any page
            with a form must: a session made and its cookie signed
"""
import argparse

from flask import Flask, render_template
from hello import serve
from jinja2 import DictLoader

LEVELS = ("template", "babel", "csrf", "token")
PAGE = '<p id="account">{{ word }}</p><input type="hidden" name="csrf_token" value="{{ token }}">'


def make_app(adds: str) -> Flask:
    level = LEVELS.index(adds)
    app = Flask(__name__)
    app.jinja_loader = DictLoader({"page.html": PAGE})
    translate = str
    if level >= LEVELS.index("babel"):
        from flask_babel import Babel, gettext
        Babel(app)
        translate = gettext
    if level >= LEVELS.index("csrf"):
        from flask_wtf.csrf import CSRFProtect
        app.secret_key = "bench-only-" + "x" * 32  # which it needs, and with it Flask's session
        CSRFProtect(app)
    token = lambda: ""  # noqa: E731
    if level >= LEVELS.index("token"):
        from flask_wtf.csrf import generate_csrf as token

    @app.get("/")
    def page():
        return render_template("page.html", word=translate("Maria"), token=token())

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--adds", choices=LEVELS, required=True)
    serve(lambda args: make_app(args.adds), parser)
