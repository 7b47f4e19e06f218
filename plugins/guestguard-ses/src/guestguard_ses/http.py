"""The two calls this plugin makes to Amazon besides sending: fetching a
signing certificate and confirming a subscription. Bounded in time and
size, and never following a redirect (which could lead off Amazon's hosts)."""
from __future__ import annotations

import urllib.error
import urllib.request

# A PEM certificate is a few KiB; a subscription answer is small XML.
MAX_ANSWER_BYTES = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class FetchFailed(Exception):
    """The call did not answer 200 with a body within bounds."""


def get(url: str, timeout: float) -> bytes:
    """GET ``url``: its body on a 200, FetchFailed otherwise (timeouts,
    errors, redirects and bodies over MAX_ANSWER_BYTES included)."""
    try:
        # The caller checked the URL (http(s) on an allowed host: sns.check_amazon_url).
        with _opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as answer:  # noqa: S310
            if answer.status != 200:
                raise FetchFailed(f"answered {answer.status}")
            body = answer.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchFailed(f"answered {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad URLs
        raise FetchFailed(f"{type(exc).__name__}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise FetchFailed(f"answered more than {MAX_ANSWER_BYTES} bytes")
    return body
