"""CAPTCHA on signup and forgot-password.

Plugins supply verifiers (``register_captcha_verifiers``); ``captcha.verifier``
picks the one in force. Views call ``require_captcha`` (JSON) or
``form_captcha_refusal`` (HTML) after the other fields validated, so a form
with a typo does not spend the single-use token, and ``form_captcha`` to show
the widget and widen that page's Content-Security-Policy for it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guestguard.errors import APIError
from guestguard.plugins import CaptchaUnavailable, CaptchaVerifier, CaptchaWidget, by_name, chosen, collect
from guestguard.web import content_security_policy

log = logging.getLogger(__name__)

DISABLED = "disabled"
MAX_TOKEN_LENGTH = 4096
# Where a widget-less verifier's answer arrives in a form; the API's field too.
TOKEN_FIELD = "captcha_token"
# The errors key of a form's CAPTCHA refusal, shown next to the widget.
FORM_ERROR_KEY = "captcha"
CSP_DIRECTIVES = ("script-src", "frame-src", "style-src", "connect-src")

FAILED = "The CAPTCHA was not solved. Please complete it and try again."
UNAVAILABLE = "We cannot check the CAPTCHA right now. Please try again in a few minutes."


def select_verifier(settings: Mapping[str, Any], verifiers: Iterable[object]) -> CaptchaVerifier:
    """The verifier ``captcha.verifier`` names; SettingsError naming the
    setting when no plugin registered it."""
    indexed = by_name(verifiers, CaptchaVerifier, "CAPTCHA verifier")
    return chosen(indexed, "captcha.verifier", settings["captcha.verifier"], "verifier")


def active_verifier(request) -> CaptchaVerifier:
    return request.registry["captcha.verifier"]


def require_captcha(request, token: str | None) -> None:
    """Pass, or raise APIError: 400 ``captcha_failed`` for a missing, malformed
    or rejected token; 503 ``captcha_unavailable`` when the service cannot
    answer and ``captcha.on_unavailable = refuse``."""
    active = active_verifier(request)
    if active.name == DISABLED:
        return
    if not _well_formed(token):
        raise _failed()
    try:
        solved = active.verify(token, request.client_ip)
    except CaptchaUnavailable as exc:
        reason = str(exc)
    except Exception:
        # A broken plugin is the service being unavailable, not a 500.
        log.exception("CAPTCHA verifier %s failed unexpectedly", active.name)
        reason = "unexpected error"
    else:
        if solved is not True:
            raise _failed()
        return
    _when_unavailable(request, active, reason)


def _well_formed(token: str | None) -> bool:
    return (bool(token) and len(token) <= MAX_TOKEN_LENGTH
            and all("!" <= char <= "~" for char in token))


def _failed() -> APIError:
    return APIError(400, "captcha_failed", FAILED, fields={TOKEN_FIELD: FAILED})


def _when_unavailable(request, active: CaptchaVerifier, reason: str) -> None:
    if request.registry.settings["captcha.on_unavailable"] == "allow":
        log.warning("CAPTCHA verifier %s is unavailable (%s); request allowed by "
                    "captcha.on_unavailable = allow", active.name, reason)
        return
    log.warning("CAPTCHA verifier %s is unavailable (%s); request refused", active.name, reason)
    raise APIError(503, "captcha_unavailable", UNAVAILABLE)


# --- HTML forms ----------------------------------------------------------------


@dataclass(frozen=True)
class FormCaptcha:
    """What a form template needs: whether to show anything, the vendor's
    widget (None for a verifier whose answer is typed into ``field``)."""

    required: bool
    widget: CaptchaWidget | None
    field: str


def form_captcha(request) -> FormCaptcha:
    """The CAPTCHA for a form page; widens this response's CSP for the
    widget's origins (the security-headers tween keeps a CSP a view set)."""
    active = active_verifier(request)
    widget = active.widget
    if widget is not None and widget.csp_sources:
        request.response.headers["Content-Security-Policy"] = content_security_policy(
            dict.fromkeys(CSP_DIRECTIVES, widget.csp_sources))
    return FormCaptcha(required=active.name != DISABLED, widget=widget, field=_form_field(active))


def _form_field(active: CaptchaVerifier) -> str:
    return active.widget.response_field if active.widget else TOKEN_FIELD


def form_captcha_refusal(request) -> APIError | None:
    """Check the token a form posted; the refusal to show on the form, or None."""
    try:
        require_captcha(request, request.POST.get(_form_field(active_verifier(request))))
    except APIError as refusal:
        return refusal
    return None


def includeme(config) -> None:
    registry = config.registry
    settings = config.get_settings()
    verifiers = collect(registry["plugins"].hook.register_captcha_verifiers(settings=settings))
    registry["captcha.verifier"] = select_verifier(settings, verifiers)
