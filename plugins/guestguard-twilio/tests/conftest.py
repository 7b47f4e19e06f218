"""A stand-in for Twilio's Messages API on 127.0.0.1, driven through the real
twilio SDK, and the settings that point the plugin at it."""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "stub-auth-token-0123456789"
FROM_NUMBER = "+15005550006"
PUBLIC_BASE_URL = "https://gg.example"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


@dataclass
class Answer:
    """What the stub answers to the next create: an HTTP status, a Twilio
    error code, or a pause (seconds) before answering."""

    status: int = 201
    code: int | None = None
    pause: float = 0


@dataclass
class Received:
    path: str
    form: dict[str, str]
    authorized: bool


@dataclass
class TwilioStub:
    url: str = ""
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    from_number: str = FROM_NUMBER
    public_base_url: str = PUBLIC_BASE_URL
    answers: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int = 201, code: int | None = None, pause: float = 0, times: int = 1) -> None:
        """Answer the next ``times`` creates so (then accept again)."""
        with self.lock:
            self.answers.extend([Answer(status, code, pause)] * times)

    def next_answer(self) -> Answer:
        with self.lock:
            return self.answers.pop(0) if self.answers else Answer()

    def settings(self, **overrides: str) -> dict[str, str]:
        """App settings that send SMS through the plugin to this stub."""
        return {"notifications.sms.provider": "twilio", "twilio.account_sid": self.account_sid,
                "twilio.auth_token": self.auth_token, "twilio.from_number": self.from_number,
                "twilio.public_base_url": self.public_base_url, "twilio.api_base_url": self.url,
                "twilio.timeout": "2", **overrides}

    @property
    def sent(self) -> list[dict[str, str]]:
        """The forms of the messages it accepted."""
        return [r.form for r in self.received if r.authorized and r.form.get("accepted") == "yes"]


def handler_for(stub: TwilioStub) -> type[BaseHTTPRequestHandler]:
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
            return

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status: int, code: int | None, message: str) -> None:
            self.reply(status, {"code": code, "message": message, "status": status,
                                "more_info": f"https://www.twilio.com/docs/errors/{code}"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
            authorized = self.headers.get("Authorization") == expected_auth
            record = Received(self.path, form, authorized)
            with stub.lock:
                stub.received.append(record)
            if not authorized:
                return self.error(401, 20003, "Authenticate")
            if self.path != MESSAGES_PATH:
                return self.error(404, 20404, "The requested resource was not found")
            if not form.get("To") or not form.get("Body") or not (form.get("From") or form.get("MessagingServiceSid")):
                return self.error(400, 21604, "A 'To' phone number and a 'Body' are required.")
            answer = stub.next_answer()
            if answer.pause:
                time.sleep(answer.pause)
            if answer.status >= 400:
                return self.error(answer.status, answer.code,
                                  f"The 'To' number {form['To']} is refused")  # as Twilio's own text does
            form["accepted"] = "yes"
            sid = "SM" + secrets.token_hex(16)
            return self.reply(201, {
                "sid": sid, "account_sid": ACCOUNT_SID, "to": form["To"], "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"), "body": form["Body"],
                "status": "queued", "num_segments": "1", "num_media": "0", "direction": "outbound-api",
                "api_version": "2010-04-01", "price": None, "price_unit": "USD", "error_code": None,
                "error_message": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
                "date_created": "Sun, 06 Dec 2026 08:00:00 +0000", "date_updated": "Sun, 06 Dec 2026 08:00:00 +0000",
                "date_sent": None, "subresource_uris": {}})

    return Handler


@pytest.fixture
def twilio_stub() -> Iterator[TwilioStub]:
    stub = TwilioStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()

