"""The built-in CAPTCHA verifiers, a default plugin: ``disabled`` (the
development default: no CAPTCHA at all) and ``test``, which shows no widget
and accepts the typed answer ``pass``, for tests and trying the forms out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestguard.plugins import CaptchaUnavailable, CaptchaWidget, SettingsError, hookimpl

PASS = "pass"
# The test verifier's answer that plays a vendor outage.
UNAVAILABLE = "unavailable"


class DisabledVerifier:
    name = "disabled"
    widget: CaptchaWidget | None = None

    def verify(self, token: str, remote_ip: str | None) -> bool:
        return True


class StubVerifier:
    name = "test"
    widget: CaptchaWidget | None = None

    def verify(self, token: str, remote_ip: str | None) -> bool:
        if token == UNAVAILABLE:
            raise CaptchaUnavailable("the test verifier was asked to be unavailable")
        return token == PASS


@hookimpl
def register_captcha_verifiers(settings: Mapping[str, Any]) -> list[object]:
    if settings["captcha.verifier"] == StubVerifier.name and settings["app.env"] == "production":
        raise SettingsError("setting 'captcha.verifier' is 'test', which lets anyone through "
                            f"who types {PASS!r}: not allowed in production")
    return [DisabledVerifier(), StubVerifier()]
