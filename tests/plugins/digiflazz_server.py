"""A local fake of Digiflazz's buyer transaction API, for tests (no internet here).

What it follows, per developer.digiflazz.com (api/buyer/topup, cek-status,
response-code, webhook):
- POST /v1/transaction with JSON {username, buyer_sku_code, customer_no, ref_id,
  sign, testing?, allow_dot?, cb_url?}; sign = md5(username + apiKey + ref_id);
  the answer is {"data": {ref_id, customer_no, buyer_sku_code, message, status,
  rc, sn, buyer_last_saldo, price, tele, wa}}, status Sukses | Pending | Gagal.
- The same ref_id again is a status check: it answers the transaction it holds
  and never buys twice. Only a response code that forms a transaction
  ("Terbentuk Transaksi": Ya) puts the ref_id in the ledger; the others (wrong
  sign, unknown SKU, no balance...) leave it unused.
- Callbacks: POST with X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>,
  X-Digiflazz-Event: create | update, User-Agent: Digiflazz-Hookshot.

Not documented, so chosen here: answers that form no transaction come with HTTP
400 (the client must read the rc whatever the status); a ref_id sent again with
another SKU or customer number is refused with rc 49 (Ref ID tidak unik).

Scripting, per test: `script` is consumed one step per request: "500", "429"
(refused before processing), "garbage" (processed, then a body that is not
JSON), "slow" (processed, then answered after `slow_seconds`); `outcomes` is
consumed one per new transaction: "Sukses", "Pending", or (status, rc).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES = {"00": "Transaksi Sukses", "03": "Transaksi Pending", "40": "Payload Error",
            "41": "Signature tidak valid", "42": "Gagal memproses API Buyer",
            "43": "SKU tidak di temukan atau Non-Aktif", "44": "Saldo tidak cukup",
            "49": "Ref ID tidak unik", "54": "Nomor Tujuan Salah", "58": "Sedang Cut Off",
            "62": "Seller sedang mengalami gangguan", "70": "Timeout Dari Biller"}
# response codes that form no transaction (the ref_id stays unused)
NOT_FORMED = {"40", "41", "42", "43", "44", "45", "47", "49", "56", "61", "62", "63", "64",
              "65", "66", "67", "68", "69", "80", "81", "82", "83", "87", "88"}
PRICE = 10_250  # whole rupiah, as Digiflazz quotes prices


class FakeDigiflazz:
    def __init__(self, username: str, api_key: str, skus=("TTC70",)):
        self.username, self.api_key, self.skus = username, api_key, set(skus)
        self.ledger: dict[str, dict] = {}  # ref_id -> the transaction Digiflazz holds
        self.requests: list[dict] = []  # every request body, parsed
        self.script: list[str] = []
        self.outcomes: list = []
        self.slow_seconds = 1.5
        self.balance = 1_000_000
        self.lock = threading.Lock()
        self._serials = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path != "/v1/transaction":
                    return self._send(404, b"not found", "text/plain")
                step = fake.script.pop(0) if fake.script else None
                if step == "500":
                    return self._send(500, b"<h1>Internal Server Error</h1>", "text/html")
                if step == "429":
                    return self._send(429, b"Too Many Requests", "text/plain")
                http_status, answer = fake.transaction(raw)
                if step == "garbage":
                    return self._send(200, b'{"data": {"ref_id": "', "application/json")
                if step == "slow":
                    time.sleep(fake.slow_seconds)
                self._send(http_status, json.dumps({"data": answer}).encode(), "application/json")

            def _send(self, status, body, content_type):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the "slow" step)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeDigiflazz:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # --- the API ----------------------------------------------------------------

    def transaction(self, raw: bytes) -> tuple[int, dict]:
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error("40", {})
        if not isinstance(body, dict):
            return self._error("40", {})
        with self.lock:
            self.requests.append(body)
        fields = ("username", "buyer_sku_code", "customer_no", "ref_id", "sign")
        if not all(isinstance(body.get(name), str) and body[name] for name in fields):
            return self._error("40", body)
        if any(not isinstance(body.get(flag, False), bool) for flag in ("testing", "allow_dot")):
            return self._error("40", body)
        if body["username"] != self.username:
            return self._error("42", body)
        expected = hashlib.md5((self.username + self.api_key + body["ref_id"]).encode()).hexdigest()
        if not hmac.compare_digest(body["sign"], expected):
            return self._error("41", body)
        with self.lock:
            held = self.ledger.get(body["ref_id"])
            if held is not None:  # a status check
                if (held["buyer_sku_code"], held["customer_no"]) != (body["buyer_sku_code"],
                                                                      body["customer_no"]):
                    return self._error("49", body)
                return 200, dict(held)
            if body["buyer_sku_code"] not in self.skus:
                return self._error("43", body)
            outcome = self.outcomes.pop(0) if self.outcomes else "Sukses"
            status, rc = {"Sukses": ("Sukses", "00"), "Pending": ("Pending", "03")}.get(
                outcome, outcome)
            if rc == "00" and self.balance < PRICE:
                status, rc = "Gagal", "44"
            if rc in NOT_FORMED:
                return self._error(rc, body)
            held = {"ref_id": body["ref_id"], "customer_no": body["customer_no"],
                    "buyer_sku_code": body["buyer_sku_code"], "testing": body.get("testing", False),
                    "price": PRICE, "tele": "@telegram", "wa": "081234512345"}
            self.ledger[body["ref_id"]] = held
            self._settle(held, status, rc)
            return 200, dict(held)

    def _settle(self, held: dict, status: str, rc: str) -> None:
        """Give a held transaction its (new) status; a success is paid from the balance."""
        if status == "Sukses" and held.get("status") != "Sukses":
            self.balance -= PRICE
        held.update(status=status, rc=rc, message=MESSAGES.get(rc, "Transaksi " + status),
                    sn=f"TTC/{next(self._serials):010d}" if status == "Sukses" else "",
                    buyer_last_saldo=self.balance)

    def _error(self, rc: str, body: dict) -> tuple[int, dict]:
        return 400, {"ref_id": body.get("ref_id", ""), "customer_no": body.get("customer_no", ""),
                     "buyer_sku_code": body.get("buyer_sku_code", ""),
                     "message": MESSAGES.get(rc, "Transaksi Gagal"), "status": "Gagal", "rc": rc,
                     "sn": "", "buyer_last_saldo": self.balance, "price": 0}

    # --- what tests look at and do ------------------------------------------------

    @property
    def purchases(self) -> int:
        """Transactions that took money: the number of top-ups actually made."""
        return sum(1 for held in self.ledger.values() if held["status"] == "Sukses")

    def complete(self, ref_id: str, status: str = "Sukses", rc: str | None = None) -> None:
        """The seller finished a pending transaction."""
        with self.lock:
            self._settle(self.ledger[ref_id], status, rc or ("00" if status == "Sukses" else "02"))

    def callback(self, ref_id: str, secret: str, event: str = "update") -> tuple[bytes, dict]:
        """The webhook Digiflazz would send about ref_id: (raw body, headers)."""
        with self.lock:
            held = {key: value for key, value in self.ledger[ref_id].items() if key != "testing"}
        body = json.dumps({"data": held}).encode()
        mac = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        return body, {"X-Hub-Signature": f"sha1={mac}", "X-Digiflazz-Event": event,
                      "User-Agent": "Digiflazz-Hookshot", "Content-Type": "application/json"}

    def send_callback(self, url: str, ref_id: str, secret: str, event: str = "update") -> int:
        """POST the callback to url, as Digiflazz does; returns the HTTP status."""
        body, headers = self.callback(ref_id, secret, event)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            with error:
                return error.code
