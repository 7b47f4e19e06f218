"""Amazon SNS message verification, as Amazon documents it.

A message is genuine when its ``Signature`` verifies, with the public key of
the certificate at ``SigningCertURL``, over the canonical string of its
type: ``Key\\nValue\\n`` for each signed field present, in the fixed order
below. SignatureVersion 1 signs with SHA1withRSA, 2 with SHA256withRSA.
The certificate must come from Amazon: an https URL on an
``sns.<region>.amazonaws.com`` host ending in ``.pem``. A message older than
an hour (or dated in the future) is refused as a replay, and only the topics
allowed by settings are taken.

Pure functions, with the certificate fetcher handed in, so every rule can
be tested (and mutation-tested) without a network.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cryptography import x509

# The hosts Amazon serves signing certificates (and subscription links) from.
AMAZON_HOSTS = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
MAX_AGE = dt.timedelta(hours=1)
# Clocks differ: a message a little in our future is not a forgery.
MAX_AHEAD = dt.timedelta(minutes=5)
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    "Notification": NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": CONFIRMATION_FIELDS,
}
# By name: cryptography is imported by the first signature checked (its Rust
# core is some 8 MiB in a process), not by every web worker at startup.
HASHES = {"1": "SHA1", "2": "SHA256"}
# Fields every message must carry, whatever its type.
REQUIRED = ("Type", "MessageId", "TopicArn", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL")


class Refused(Exception):
    """A message not taken; ``forged`` tells a failed check of authenticity
    (403) from a malformed or stale message (400)."""

    def __init__(self, reason: str, *, forged: bool):
        super().__init__(reason)
        self.forged = forged


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched: ask again later."""


@dataclass(frozen=True)
class Policy:
    """What settings allow: signature versions, topics, certificate hosts
    (a regular expression), plain http for them (tests only)."""

    versions: Collection[str] = ("1", "2")
    topics: Collection[str] = ()
    hosts: str = AMAZON_HOSTS
    allow_http: bool = False


def canonical_string(message: Mapping[str, Any]) -> bytes:
    """What Amazon signed for ``message`` (its Type decides the fields)."""
    fields = SIGNED_FIELDS.get(message.get("Type"))
    if fields is None:
        raise Refused(f"unknown message Type {message.get('Type')!r}", forged=False)
    return "".join(f"{name}\n{message[name]}\n" for name in fields if name in message).encode()


def check_amazon_url(url: Any, policy: Policy, what: str) -> str:
    """``url`` when it points at an allowed host (https, or http when the
    policy allows it for tests); Refused otherwise."""
    if not isinstance(url, str):
        raise Refused(f"{what} is not a URL", forged=True)
    parts = urlsplit(url)
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise Refused(f"{what} must use https", forged=True)
    if parts.username is not None or parts.password is not None:
        raise Refused(f"{what} must not carry credentials", forged=True)
    if not parts.hostname or not re.fullmatch(policy.hosts, parts.hostname):
        raise Refused(f"{what} is not on an Amazon SNS host", forged=True)
    return url


def check_certificate_url(url: Any, policy: Policy) -> str:
    url = check_amazon_url(url, policy, "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise Refused("SigningCertURL is not a certificate (.pem)", forged=True)
    return url


def parse_timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise Refused("Timestamp is missing", forged=False)
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Refused("Timestamp is not an ISO 8601 time", forged=False) from None
    if stamp.tzinfo is None:
        raise Refused("Timestamp has no time zone", forged=False)
    return stamp


def check_fresh(message: Mapping[str, Any], now: dt.datetime) -> None:
    stamp = parse_timestamp(message.get("Timestamp"))
    if stamp < now - MAX_AGE:
        raise Refused("the message is more than an hour old", forged=False)
    if stamp > now + MAX_AHEAD:
        raise Refused("the message is dated in the future", forged=False)


def check_shape(message: Any) -> None:
    if not isinstance(message, Mapping):
        raise Refused("the body is not a JSON object", forged=False)
    for name in REQUIRED:
        if not isinstance(message.get(name), str) or not message[name]:
            raise Refused(f"{name} is missing", forged=False)
    fields = SIGNED_FIELDS.get(message["Type"])
    if fields is None:
        raise Refused(f"unknown message Type {message['Type']!r}", forged=False)
    for name in fields:
        if name != "Subject" and not isinstance(message.get(name), str):
            raise Refused(f"{name} is missing", forged=False)
    if "Subject" in message and not isinstance(message["Subject"], str):
        raise Refused("Subject is not text", forged=False)


def check_signature(message: Mapping[str, Any], certificate: x509.Certificate) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise Refused("Signature is not base64", forged=True) from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("the signing certificate has no RSA key", forged=True)
    algorithm = getattr(hashes, HASHES[message["SignatureVersion"]])()
    try:
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Refused("the signature does not match", forged=True) from None


def verify(message: Any, policy: Policy, fetch: Callable[[str], x509.Certificate],
           now: dt.datetime) -> Mapping[str, Any]:
    """``message`` when it is a genuine, fresh SNS message of an allowed
    topic; Refused otherwise (CertificateUnavailable when the certificate
    could not be had). Cheap checks first: nothing is fetched for a message
    that fails them."""
    check_shape(message)
    if message["SignatureVersion"] not in HASHES or message["SignatureVersion"] not in policy.versions:
        raise Refused(f"SignatureVersion {message['SignatureVersion']!r} is not accepted", forged=True)
    if message["TopicArn"] not in policy.topics:
        raise Refused("the topic is not one this site subscribed to", forged=True)
    check_fresh(message, now)
    url = check_certificate_url(message["SigningCertURL"], policy)
    check_signature(message, fetch(url))
    return message


class CertificateCache:
    """Certificates by URL, fetched once (``fetch_pem(url) -> bytes``), the
    ``size`` most recently used kept. Amazon's certificates change rarely
    and each URL names one, so an entry never needs refreshing."""

    def __init__(self, fetch_pem: Callable[[str], bytes], size: int = 16):
        self.fetch_pem = fetch_pem
        self.size = size
        self._lock = threading.Lock()
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()

    def __call__(self, url: str) -> x509.Certificate:
        with self._lock:
            if url in self._certificates:
                self._certificates.move_to_end(url)
                return self._certificates[url]
        pem = self.fetch_pem(url)
        from cryptography import x509

        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise CertificateUnavailable(f"{url} did not serve a PEM certificate") from None
        with self._lock:
            self._certificates[url] = certificate
            self._certificates.move_to_end(url)
            while len(self._certificates) > self.size:
                self._certificates.popitem(last=False)
        return certificate
