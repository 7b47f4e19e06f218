"""Test helpers for this plugin's tests (and an integrator's): SNS messages
signed as Amazon signs them with a throwaway certificate, a local HTTP
server to serve that certificate and take subscription confirmations, and
moto's SES server. Not used at run time."""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:eu-west-1:123456789012:guestguard-ses-events"
REGION = "eu-west-1"
# What Amazon signs, per message type, written out here apart from the code
# under test so that a mistake there shows.
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def self_signed(key: rsa.RSAPrivateKey, name: str = "sns.eu-west-1.amazonaws.com") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


class Signer:
    """A throwaway key and certificate signing SNS messages."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate = self_signed(self.key)
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version}
        text = "".join(f"{name}\n{message[name]}\n" for name in SIGNED[message["Type"]] if name in message)
        # SHA-1 is what SignatureVersion 1 is, as Amazon still signs it.
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        message["Signature"] = base64.b64encode(
            self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)).decode()
        return message


def timestamp(at: dt.datetime | None = None) -> str:
    at = at or dt.datetime.now(dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def notification(message: str | dict, cert_url: str, *, topic: str = TOPIC, at: dt.datetime | None = None,
                 message_id: str | None = None, subject: str | None = None) -> dict[str, Any]:
    """An unsigned SNS Notification carrying ``message``."""
    envelope = {"Type": "Notification", "MessageId": message_id or str(uuid.uuid4()), "TopicArn": topic,
                "Message": message if isinstance(message, str) else json.dumps(message),
                "Timestamp": timestamp(at), "SigningCertURL": cert_url,
                "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"}
    if subject is not None:
        envelope["Subject"] = subject
    return envelope


def confirmation(subscribe_url: str, cert_url: str, *, kind: str = "SubscriptionConfirmation",
                 topic: str = TOPIC, at: dt.datetime | None = None) -> dict[str, Any]:
    return {"Type": kind, "MessageId": str(uuid.uuid4()), "Token": "2336412f37fb687f5d51e6e2425c464de",
            "TopicArn": topic, "Message": f"You have chosen to subscribe to the topic {topic}.",
            "SubscribeURL": subscribe_url, "Timestamp": timestamp(at), "SigningCertURL": cert_url}


def ses_event(kind: str, message_id: str, *, shape: str = "eventType", **details: Any) -> dict[str, Any]:
    """An SES event as a configuration set (``eventType``) or an identity's
    notifications (``notificationType``) publish it."""
    event: dict[str, Any] = {shape: kind, "mail": {
        "timestamp": timestamp(), "messageId": message_id, "source": "no-reply@gg.example",
        "destination": ["grace@example.com"]}}
    event.update(details)
    return event


class LocalServer:
    """An HTTP server on 127.0.0.1. A GET of a path it was given
    (``answers[path] = (status, body)``) gets that answer, any other 404; a
    POST gets ``post_answer`` (status, JSON body). It records the paths
    asked and the JSON bodies posted."""

    def __init__(self, post_answer: tuple[int, dict] = (404, {})):
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.post_answer = post_answer
        self.asked: list[str] = []
        self.posted: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.asked.append(self.path)
                self.answer(*server.answers.get(self.path, (404, b"not here")))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.posted.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
                status, body = server.post_answer
                self.answer(status, json.dumps(body).encode(), {
                    "Content-Type": "application/json", "x-amzn-ErrorType": body.get("__type", "")})

            def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MotoSES:
    """moto's server on a free local port: SES over real HTTP."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def client(self, service: str = "sesv2"):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 (moto's)

    def sent(self) -> list[dict[str, Any]]:
        """The raw messages moto took, oldest first."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=10) as answer:  # noqa: S310 (local)
            return json.load(answer)["ses"]["RawMessage"]

    def reset(self) -> None:
        reset = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 (local)
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310

    def close(self) -> None:
        self.server.stop()
