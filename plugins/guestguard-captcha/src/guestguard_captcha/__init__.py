"""GuestGuard plugin: hCaptcha and Cloudflare Turnstile, standard library only.

Both vendors work alike: their script on the form puts a single-use token in
a form field; the server posts it, with its secret, to the vendor's siteverify
endpoint and gets JSON back, ``{"success": true|false, "error-codes": [...]}``.

``verify`` returns that ``success``. Whatever keeps us from a trustworthy
answer raises CaptchaUnavailable, and GuestGuard then follows
``captcha.on_unavailable``: a timeout, a refused connection, an answer other
than 200, a redirect, a body that is not the JSON described, and also a
refusal the visitor did not cause (our secret rejected, the vendor's own
internal error). Telling a visitor "you failed the CAPTCHA" for those would be
wrong, and reporting them as an outage makes the operator look.

The secret and the tokens never reach a log line or an exception message.
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from guestguard.plugins import (
    CaptchaUnavailable,
    CaptchaWidget,
    Setting,
    SettingsError,
    as_float,
    as_str,
    as_url,
    hookimpl,
)

__all__ = [
    "HCAPTCHA",
    "TURNSTILE",
    "SiteverifyVerifier",
    "Vendor",
    "register_captcha_verifiers",
    "register_settings",
]

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024
MAX_TIMEOUT = 30.0
# error-codes that blame our settings or the vendor, not the visitor.
NOT_THE_VISITOR = frozenset({
    "missing-input-secret", "invalid-input-secret", "sitekey-secret-mismatch", "internal-error",
})
ERROR_CODE = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True)
class Vendor:
    name: str
    title: str
    verify_url: str
    script_url: str
    element_class: str
    response_field: str
    csp_sources: tuple[str, ...]
    # hCaptcha checks that the token was issued for our site key; Turnstile
    # knows it from the secret.
    posts_site_key: bool


HCAPTCHA = Vendor(
    name="hcaptcha", title="hCaptcha",
    verify_url="https://api.hcaptcha.com/siteverify",
    script_url="https://js.hcaptcha.com/1/api.js",
    element_class="h-captcha", response_field="h-captcha-response",
    csp_sources=("https://hcaptcha.com", "https://*.hcaptcha.com"),
    posts_site_key=True,
)
TURNSTILE = Vendor(
    name="turnstile", title="Cloudflare Turnstile",
    verify_url="https://challenges.cloudflare.com/turnstile/v0/siteverify",
    script_url="https://challenges.cloudflare.com/turnstile/v0/api.js",
    element_class="cf-turnstile", response_field="cf-turnstile-response",
    csp_sources=("https://challenges.cloudflare.com",),
    posts_site_key=False,
)
VENDORS = (HCAPTCHA, TURNSTILE)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """siteverify answers in place; a redirect would drop the POST body or
    carry it somewhere else, so it is an error (HTTPError 3xx) instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class SiteverifyVerifier:
    def __init__(self, vendor: Vendor, *, site_key: str, secret: str, verify_url: str,
                 timeout: float) -> None:
        self.name = vendor.name
        self.widget = CaptchaWidget(
            script_url=vendor.script_url, element_class=vendor.element_class, site_key=site_key,
            response_field=vendor.response_field, csp_sources=vendor.csp_sources)
        self._vendor = vendor
        self._secret = secret
        self._url = verify_url
        self._timeout = timeout
        parts = urlsplit(verify_url)
        # Host and port only: never a user:password an operator put in the URL.
        self._where = f"{vendor.title} siteverify at {parts.hostname}" + (
            f":{parts.port}" if parts.port else "")

    def __repr__(self) -> str:
        return f"<SiteverifyVerifier {self.name} {self._where}>"

    def verify(self, token: str, remote_ip: str | None) -> bool:
        answer = self._post(self._form(token, remote_ip))
        success = answer.get("success")
        if not isinstance(success, bool):
            raise CaptchaUnavailable(f"{self._where} answered without a true/false 'success'")
        if success:
            return True
        codes = _error_codes(answer.get("error-codes"))
        blamed = NOT_THE_VISITOR.intersection(codes)
        if blamed:
            log.error("%s refused our request (%s): check captcha.%s.site_key and "
                      "captcha.%s.secret", self._where, ", ".join(sorted(blamed)),
                      self.name, self.name)
            raise CaptchaUnavailable(f"{self._where} refused our request: "
                                     f"{', '.join(sorted(blamed))}")
        log.info("%s rejected a token: %s", self._where, ", ".join(codes) or "no reason given")
        return False

    def _form(self, token: str, remote_ip: str | None) -> dict[str, str]:
        form = {"secret": self._secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip
        if self._vendor.posts_site_key:
            form["sitekey"] = self.widget.site_key
        return form

    def _post(self, form: Mapping[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the URL is a vendor's https endpoint, checked at startup
            self._url, data=urlencode(form).encode("ascii"), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json", "User-Agent": "guestguard-captcha"})
        try:
            with _OPENER.open(request, timeout=self._timeout) as response:
                status = response.status
                body = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise CaptchaUnavailable(f"{self._where} answered HTTP {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise CaptchaUnavailable(f"{self._where} did not answer: {self._describe(exc)}") from exc
        if status != 200:
            raise CaptchaUnavailable(f"{self._where} answered HTTP {status}")
        if len(body) > MAX_ANSWER_BYTES:
            raise CaptchaUnavailable(f"{self._where} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except ValueError:
            raise CaptchaUnavailable(f"{self._where} answered something other than JSON") from None
        if not isinstance(answer, dict):
            raise CaptchaUnavailable(f"{self._where} answered JSON that is not an object")
        return answer

    def _describe(self, exc: BaseException) -> str:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return f"no answer within {self._timeout:g} s"
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)


def _error_codes(value: object) -> list[str]:
    """The vendor's error codes, keeping only what looks like one: the list is
    logged, and must not become a way to write anything into our logs."""
    if not isinstance(value, list):
        return []
    return [code for code in value if isinstance(code, str) and ERROR_CODE.fullmatch(code)]


# --- settings and hooks -------------------------------------------------------


def _timeout(value: str) -> float:
    seconds = as_float(0.1)(value)
    if seconds > MAX_TIMEOUT:
        raise ValueError(f"must be at most {MAX_TIMEOUT:g} seconds, got {seconds:g}")
    return seconds


def _declare() -> dict[str, Setting]:
    declared = [Setting("captcha.timeout", _timeout, 5.0,
                        "Seconds to wait for the siteverify endpoint on each network operation "
                        "(0.1-30).")]
    for vendor in VENDORS:
        prefix = f"captcha.{vendor.name}"
        declared += [
            Setting(f"{prefix}.site_key", as_str, "",
                    f"{vendor.title} site key, shown in the forms. Required when "
                    f"captcha.verifier = {vendor.name}."),
            Setting(f"{prefix}.secret", as_str, "",
                    f"{vendor.title} secret key, sent only to siteverify. Required when "
                    f"captcha.verifier = {vendor.name}.", secret=True),
            Setting(f"{prefix}.verify_url", as_url("https", "http"), vendor.verify_url,
                    f"{vendor.title} siteverify endpoint; change it only for a proxy or a test stub."),
        ]
    return {setting.name: setting for setting in declared}


SETTINGS = _declare()


def _verifier(vendor: Vendor, settings: Mapping[str, Any]) -> SiteverifyVerifier:
    prefix = f"captcha.{vendor.name}"
    if settings["captcha.verifier"] == vendor.name:
        for name in (f"{prefix}.site_key", f"{prefix}.secret"):
            if not settings[name]:
                raise SettingsError(
                    f"setting {name!r} is required when 'captcha.verifier' is {vendor.name!r}: "
                    f"set it in the ini file or the environment variable {SETTINGS[name].env_var}")
        if settings[f"{prefix}.verify_url"].startswith("http://"):
            log.warning("%s.verify_url is plain http://: the %s secret crosses the network "
                        "unencrypted", prefix, vendor.title)
    return SiteverifyVerifier(
        vendor, site_key=settings[f"{prefix}.site_key"], secret=settings[f"{prefix}.secret"],
        verify_url=settings[f"{prefix}.verify_url"], timeout=settings["captcha.timeout"])


@hookimpl
def register_settings() -> list[Setting]:
    return list(SETTINGS.values())


@hookimpl
def register_captcha_verifiers(settings: Mapping[str, Any]) -> list[SiteverifyVerifier]:
    return [_verifier(vendor, settings) for vendor in VENDORS]
