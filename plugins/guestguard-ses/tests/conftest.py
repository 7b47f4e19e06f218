from __future__ import annotations

import pytest

from guestguard_ses.testing import REGION, TOPIC, LocalServer, MotoSES, Signer

SENDER_DOMAIN = "gg.example"
CERT_PATH = "/SimpleNotificationService-test.pem"


@pytest.fixture(scope="session")
def moto():
    """moto's server, started once for the session; its SES identity verified."""
    server = MotoSES()
    yield server
    server.close()


@pytest.fixture
def ses(moto):
    """moto with no sent message and the sender's domain verified."""
    moto.reset()
    moto.client().create_email_identity(EmailIdentity=SENDER_DOMAIN)
    return moto


@pytest.fixture(scope="session")
def signer():
    return Signer()


@pytest.fixture
def local(signer):
    """A local HTTP server serving the signing certificate (and taking
    subscription confirmations)."""
    server = LocalServer()
    server.answers[CERT_PATH] = (200, signer.pem)
    yield server
    server.close()


def ses_settings(moto: MotoSES, local: LocalServer | None = None, **overrides: str) -> dict[str, str]:
    settings = {
        "notifications.email.provider": "ses",
        "notifications.email.sender": f"GuestGuard <no-reply@{SENDER_DOMAIN}>",
        "ses.region": REGION,
        "ses.endpoint_url": moto.url,
        "ses.access_key_id": "testing",
        "ses.secret_access_key": "testing",
        "ses.configuration_set": "guestguard-events",
        "ses.unsubscribe_mailto": "unsubscribe@gg.example",
        "ses.sns_topic_arns": TOPIC,
    }
    if local is not None:
        # Tests serve the certificate over plain http on 127.0.0.1: the
        # documented test-only override (the default takes Amazon's https hosts only).
        settings.update({"ses.sns_certificate_hosts": r"^127\.0\.0\.1$", "ses.sns_allow_http": "true"})
    settings.update(overrides)
    return settings
