from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import guestguard_stripe
from guestguard_stripe.testing import StripeStub


@pytest.fixture(scope="session")
def stub_server():
    """The local stand-in for Stripe's API, started once for the session on a free port."""
    server = StripeStub()
    yield server
    server.close()


@pytest.fixture
def stub(stub_server):
    stub_server.reset()
    return stub_server


def stripe_settings(stub: StripeStub, **overrides: str) -> dict[str, str]:
    settings = {
        "billing.backend": "stripe",
        "billing.enforce": "true",
        "stripe.secret_key": "sk_test_guestguard",
        "stripe.webhook_secrets": stub.secret,
        "stripe.api_base": stub.url,
        "stripe.max_retries": "0",
        "stripe.timeout": "2",
    }
    settings.update(overrides)
    return settings


# Registered in code unless the distribution is installed, whose entry
# point registers it already.
INSTALLED = any(point.name == "stripe" for point in entry_points(group="guestguard"))
PLUGINS = [] if INSTALLED else [("stripe", guestguard_stripe)]
