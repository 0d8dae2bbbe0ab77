"""A web vulnerability scanner (wapiti) finds nothing: bench/wapiti scans a
demo shop on loopback, behind TLS as the README deploys it and signed in as an
operator, time-boxed to about two minutes (its first run also installs wapiti
into its own venv). On the second CI pass the shop runs on Postgres."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "wapiti"


def test_wapiti_finds_nothing_in_the_shop_or_its_admin():
    command = [sys.executable, str(SCRIPT), "--max-scan-time", "90", "--max-attack-time", "15"]
    if os.environ.get("TOPUP_TEST_DATABASE_URL"):
        command += ["--database-url", os.environ["TOPUP_TEST_DATABASE_URL"]]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=900)
    report = ran.stdout + ran.stderr[-3000:]
    assert ran.returncode == 0, report
    assert "no findings" in ran.stdout
    crawled = int(ran.stdout.split(" pages crawled (")[0].rsplit(" ", 1)[1])
    in_admin = int(ran.stdout.split(" pages crawled (")[1].split(" ", 1)[0])
    assert crawled >= 30 and in_admin >= 10, report
