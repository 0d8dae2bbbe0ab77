"""The `topup` command, run as an operator would: its own app from the
environment (TOPUP_INSTANCE_PATH, TOPUP_DATABASE_URL), never the test app."""
from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from topup import schema
from topup.cli import display_url, main
from topup.db import database, open_database
from topup.models import Package, Price, Product
from topup.plugins import get_plugin_manager
from topup.processes import usable_cpus

TOPUP = Path(sys.executable).parent / "topup"


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """An empty instance folder and an empty database, named by environment variables."""
    url = os.environ.get("TOPUP_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'cli.sqlite'}"
    if not url.startswith("sqlite"):  # a shared server database: start it empty
        database.initialize(open_database(url))
        schema.drop_all(get_plugin_manager(disabled=[]))
        database.close()
    for name in list(os.environ):
        if name.startswith("TOPUP_") and name != "TOPUP_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    env = {"TOPUP_INSTANCE_PATH": str(tmp_path / "instance"), "TOPUP_DATABASE_URL": url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    if not database.is_closed():
        database.close()


def topup(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def counts() -> tuple[int, int, int]:
    with database.connection_context():
        return Product.select().count(), Package.select().count(), Price.select().count()


def test_init_demo_writes_a_private_config_and_seeds_the_catalog(cli_env):
    result = topup("init", "--demo")
    assert result.exit_code == 0, result.output
    config = Path(cli_env["TOPUP_INSTANCE_PATH"]) / "config.py"
    assert f"Wrote {config}" in result.output
    assert "Database ready" in result.output and "Demo catalog ready: /tiktok-coins" in result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    secret = re.search(r"^SECRET_KEY = '([0-9a-f]+)'$", text, re.M)
    assert secret and len(secret.group(1)) >= 64
    assert "DISABLED_PLUGINS = []" in text
    assert re.search(r"webhook_secret\W+whsec_[0-9a-f]{48}\W", text)
    assert (Path(cli_env["TOPUP_INSTANCE_PATH"]) / "plugins").is_dir()
    assert counts() == (1, 8, 72)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:pw@h:5432/db?password=x", "postgresql://h:5432/db"),
    ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
])
def test_the_database_url_is_displayed_without_credentials(url, shown):
    """What `topup init` prints after "Database ready:": no user, password or query."""
    assert display_url(url) == shown


def test_init_twice_keeps_the_secret_and_does_not_duplicate(cli_env):
    assert topup("init", "--demo").exit_code == 0
    config = Path(cli_env["TOPUP_INSTANCE_PATH"]) / "config.py"
    first = config.read_text()
    result = topup("init", "--demo")
    assert result.exit_code == 0, result.output
    assert "Wrote" not in result.output
    assert config.read_text() == first
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert counts() == (1, 8, 72)


def test_init_without_demo_seeds_nothing_and_keeps_the_sandboxes_off(cli_env):
    result = topup("init")
    assert result.exit_code == 0, result.output
    assert "Demo catalog" not in result.output
    assert counts() == (0, 0, 0)
    text = (Path(cli_env["TOPUP_INSTANCE_PATH"]) / "config.py").read_text()
    assert "SECRET_KEY" in text and "DISABLED_PLUGINS" not in text
    report = json.loads(topup("plugins", "--json").output)
    assert report["disabled"] == ["sandbox_delivery", "sandbox_payment"]
    assert report["payment_providers"] == []


def test_init_demo_after_a_plain_init_says_how_to_switch_the_sandboxes_on(cli_env):
    """The config exists already, so --demo cannot switch the sandboxes on: the
    operator is told, with the lines to add, or the demo shop has no way to pay."""
    assert topup("init").exit_code == 0
    result = topup("init", "--demo")
    assert result.exit_code == 0
    assert counts() == (1, 8, 72)
    report = json.loads(topup("plugins", "--json").output)
    assert report["payment_providers"] == []
    assert "already exists and disables sandbox_payment, sandbox_delivery." in result.output
    assert "DISABLED_PLUGINS = []" in result.output  # the lines to add


def test_plugins_lists_the_sandboxes_and_their_hooks(cli_env):
    assert topup("init", "--demo").exit_code == 0
    result = topup("plugins")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(re.fullmatch(r"sandbox_payment( \S+)?: register_blueprints, register_models, "
                            r"register_payment_providers", line) for line in lines), lines
    assert any(re.fullmatch(r"sandbox_delivery( \S+)?: register_delivery_backends, "
                            r"register_models", line) for line in lines), lines
    assert "disabled: -" in lines
    assert "payment providers: pix, promptpay, qris, sandbox, sepa, upi" in lines
    assert "delivery backends: manual, sandbox" in lines  # the others need settings
    assert not any(line.startswith("error in") for line in lines)


def test_plugins_json_parses(cli_env):
    assert topup("init", "--demo").exit_code == 0
    result = topup("plugins", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    plugins = {row["name"]: row for row in report["plugins"]}
    assert plugins["sandbox_payment"]["hooks"] == [
        "register_blueprints", "register_models", "register_payment_providers"]
    assert plugins["sandbox_delivery"]["hooks"] == ["register_delivery_backends",
                                                    "register_models"]
    assert report["disabled"] == []
    # The demo shows every offline method, for made-up merchants.
    assert report["payment_providers"] == ["pix", "promptpay", "qris", "sandbox", "sepa", "upi"]
    assert report["delivery_backends"] == ["manual", "sandbox"]
    assert report["errors"] == {}


def test_disabled_plugins_from_the_environment(cli_env, monkeypatch):
    assert topup("init", "--demo").exit_code == 0
    monkeypatch.setenv("TOPUP_DISABLED_PLUGINS", '["sandbox_payment"]')
    report = json.loads(topup("plugins", "--json").output)
    assert report["disabled"] == ["sandbox_payment"]
    assert "sandbox_payment" not in {row["name"] for row in report["plugins"]}
    assert "sandbox_delivery" in {row["name"] for row in report["plugins"]}
    assert "sandbox" not in report["payment_providers"]
    assert report["delivery_backends"] == ["manual", "sandbox"]
    text = topup("plugins").output
    assert "disabled: sandbox_payment" in text.splitlines()
    assert "payment providers: pix, promptpay, qris, sepa, upi" in text.splitlines()


def test_a_broken_plugin_setting_is_reported_not_fatal(cli_env, monkeypatch):
    assert topup("init", "--demo").exit_code == 0
    monkeypatch.setenv("TOPUP_PLUGINS", '{"sandbox_payment": {}}')  # no webhook_secret
    result = topup("plugins", "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert "webhook_secret" in report["errors"]["sandbox_payment"]
    assert report["payment_providers"] == []


def test_serve_refuses_when_init_was_not_run(cli_env, monkeypatch):
    monkeypatch.setenv("TOPUP_SECRET_KEY", "a-secret-from-the-environment")
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "The database has no tables yet: run `topup init`." in result.output


def test_serve_refuses_without_a_secret_key(cli_env):
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "No SECRET_KEY" in result.output and "topup init" in result.output


def test_worker_refuses_when_init_was_not_run(cli_env, monkeypatch):
    monkeypatch.setenv("TOPUP_SECRET_KEY", "a-secret-from-the-environment")
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 1
    assert "run `topup init`" in result.output


def test_migrate_on_a_fresh_init_is_up_to_date(cli_env):
    assert topup("init").exit_code == 0
    result = topup("migrate")
    assert result.exit_code == 0, result.output
    assert "Schema is up to date." in result.output


def test_help_lists_the_commands(cli_env):
    result = topup("--help")
    assert result.exit_code == 0
    for command in ("init", "serve", "worker", "plugins", "migrate"):
        assert command in result.output


# --- the real console script ---------------------------------------------------------


def get(port: int, path: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def cpus_of(pid: int) -> set[frozenset]:
    """The CPU sets its threads may run on (one set when all agree)."""
    return {frozenset(os.sched_getaffinity(int(thread)))
            for thread in os.listdir(f"/proc/{pid}/task")}


def test_serve_cpu_must_be_one_this_process_may_use_or_all(cli_env, monkeypatch):
    monkeypatch.setenv("TOPUP_SECRET_KEY", "a-secret-from-the-environment")
    beyond = str(max(usable_cpus()) + 1)
    for choice in (beyond, "-1", "first", ""):
        result = CliRunner().invoke(main, ["serve", "--port", "1", "--cpu", choice])
        assert result.exit_code == 2, (choice, result.output)
        assert "Invalid value for --cpu" in result.output
        assert f"one of the CPUs this process may use: {usable_cpus()}" in result.output
    result = CliRunner().invoke(main, ["serve", "--port", "1", "--cpu", "0", "--processes", "2"])
    assert result.exit_code == 2
    assert "--processes gives each process its own CPU" in result.output


def test_run_on_one_cpu_places_every_thread_before_and_after(tmp_path):
    """In a process of its own: pinning pytest itself would slow every later test."""
    script = """
import json, os, threading
from topup.processes import current_cpu, run_on_one_cpu, usable_cpus
usable = usable_cpus()
gate = threading.Event()
before = threading.Thread(target=gate.wait); before.start()
where = current_cpu()
chosen = run_on_one_cpu()
after = threading.Thread(target=gate.wait); after.start()
threads = {int(t): sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
again = run_on_one_cpu(usable[-1])
last = {int(t): sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
gate.set()
print(json.dumps({"where": where, "chosen": chosen, "threads": threads, "again": again,
                  "last": last, "usable": usable}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    seen = json.loads(done.stdout)
    assert seen["where"] in seen["usable"]
    assert len(seen["threads"]) == 3  # main, and the threads started before and after
    assert all(cpus == [seen["chosen"]] for cpus in seen["threads"].values()), seen
    assert seen["again"] == seen["usable"][-1]
    assert all(cpus == [seen["again"]] for cpus in seen["last"].values()), seen


def test_the_console_script_inits_and_serves(cli_env, tmp_path):
    env = {**os.environ, **cli_env}
    init = subprocess.run([str(TOPUP), "init", "--demo"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert "Demo catalog ready: /tiktok-coins" in init.stdout

    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([str(TOPUP), "serve", "--port", "0"], env=env,
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (announced := re.search(r"serving on http://127\.0\.0\.1:(\d+)/",
                                              log_path.read_text())):
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "topup serve did not start"
                time.sleep(0.1)
            port = int(announced.group(1))
            assert port != 0  # the port the system picked, not the one asked for
            status, _, landing = get(port, "/")
            assert status == 200 and "Top up TikTok Coins" in landing  # the only product, at once
            status, headers, page = get(port, "/tiktok-coins")
            assert status == 200
            assert "Top up TikTok Coins" in page and "$0.94" in page
            assert "Content-Security-Policy" in headers
            assert headers.get("Server", "").startswith("topup")
            # Every thread (waitress's, the delivery worker's) on one CPU of the usable ones.
            placed = cpus_of(server.pid)
            assert len(placed) == 1 and len(next(iter(placed))) == 1, placed
            assert next(iter(placed)) <= set(usable_cpus())
        finally:
            server.terminate()
            server.wait(15)
    assert server.returncode is not None
