"""The plugins page tells what `topup plugins` tells, and never a setting;
plugins' failures from any process show there until dismissed."""
from __future__ import annotations

import time

import pytest

from topup import create_app, hookimpl, problems, worker
from topup.models import PluginProblem
from topup.plugins import report
from topup.problems import this_process

from tests.conftest import WEBHOOK_SECRET
from tests.web.admin.conftest import post

SECRET_KEY = "sk_test_" + "s" * 30


@pytest.fixture
def config(config):
    config["DISABLED_PLUGINS"] = ["digiflazz"]
    config["PLUGINS"] = {**config["PLUGINS"],
                         "stripe_checkout": {"secret_key": SECRET_KEY},
                         "manual": {"notify_url": "https://ops.example/hook"}}  # no secret: fails
    return config


def test_the_plugins_page(app, runner, operator_client):
    page = operator_client.get("/admin/plugins").get_data(as_text=True)
    registry = app.extensions["topup"]
    for name, plugin in registry.pm.list_name_plugin():
        if plugin is not None:
            assert f"<td>{name}</td>" in page
    assert "sandbox_payment</td><td>–</td><td>register_blueprints, register_models, " \
           "register_payment_providers" in page
    assert "<dt>Disabled</dt><dd>digiflazz</dd>" in page
    assert "Sandbox (test payment) <span class=\"muted\">(sandbox)</span>" in page
    assert "<strong>manual</strong>: ValueError: manual: notify_url needs notify_secret" in page
    not_configured = page[page.index("<dt>Not configured</dt>"):]
    assert "pix" in not_configured and "vouchers" in not_configured
    for secret in (WEBHOOK_SECRET, SECRET_KEY, "https://ops.example/hook"):
        assert secret not in page


class FailingHousekeeping:
    """A plugin whose periodic work fails, as a reseller outage makes it."""

    @hookimpl
    def housekeeping(self):
        raise ConnectionError("reseller API unreachable")


def test_a_workers_plugin_failures_show_on_the_servers_page_until_dismissed(
        app, config, operator_client, monkeypatch):
    """The worker is another process with its own registry: what it meets is
    recorded in the database, where the server's admin page reads it."""
    worker_app = create_app(config)  # another process's registry, the same database
    worker_app.extensions["topup"].pm.register(FailingHousekeeping(), "failing_reseller")
    worker.sweep(worker_app)
    worker.sweep(worker_app)  # within the minute: counted, not written
    page = operator_client.get("/admin/plugins").get_data(as_text=True)
    assert "<h2 id=\"problems-title\">Problems</h2>" in page
    assert "<td>failing_reseller</td><td>ConnectionError: reseller API unreachable</td>" in page
    assert f"<td>{this_process()}</td>" in page
    assert "failing_reseller" not in app.extensions["topup"].errors  # not this process's

    later = time.monotonic() + problems.WRITE_EVERY_SECONDS + 1
    monkeypatch.setattr(problems.time, "monotonic", lambda: later)
    worker.sweep(worker_app)  # a minute on: written, with the failure counted in between
    assert PluginProblem.get(PluginProblem.plugin == "failing_reseller").count == 3

    text = runner_output(app)
    assert "problem in failing_reseller: ConnectionError: reseller API unreachable (3x, last " in text

    dismissed = post(operator_client, "/admin/plugins/problems/dismiss",
                     {"plugin": "failing_reseller"}, follow_redirects=True)
    assert "Dismissed the problem with failing_reseller" in dismissed.get_data(as_text=True)
    assert "problems-title" not in dismissed.get_data(as_text=True)
    again = post(operator_client, "/admin/plugins/problems/dismiss",
                 {"plugin": "failing_reseller"}, follow_redirects=True)
    assert "There was no problem with failing_reseller" in again.get_data(as_text=True)
    refused = operator_client.post("/admin/plugins/problems/dismiss",
                                   data={"plugin": "failing_reseller"})  # no CSRF token
    assert refused.status_code == 400


def test_a_new_message_is_written_at_once_and_a_broken_database_does_not_spread(app, caplog):
    registry = app.extensions["topup"]
    with app.app_context():
        registry.contain("flaky", RuntimeError("first"))
        registry.contain("flaky", RuntimeError("second"))  # another message: no waiting
        problem = PluginProblem.get(PluginProblem.plugin == "flaky")
        assert (problem.message, problem.count) == ("RuntimeError: second", 2)
        assert problem.first_at <= problem.last_at

        PluginProblem.drop_table()
        registry.contain("flaky", RuntimeError("third"))  # logged, and the caller goes on
        assert "could not record plugin flaky's failure" in caplog.text
        assert "plugin flaky failed: RuntimeError: third" in caplog.text
        assert report(registry)["problems"] == []  # the page and `topup plugins` still answer
        assert "could not read plugin problems" in caplog.text


def runner_output(app) -> str:
    from topup.cli import main

    return app.test_cli_runner().invoke(main, ["plugins"]).output
