"""CSRF tokens bound to the login they protect.

Signed in through the session cookie, a caller's token is an HMAC of that
login's id under a key derived from the app secret: it changes with every
login and stops working at logout, and a cookie planted from elsewhere (a
sibling subdomain can set one) cannot carry a token the attacker knows into
someone else's login. Before signing in (the login and sign-up forms), the
token lives in the signed ``gg_flash`` cookie session, which login and logout
start afresh."""
from __future__ import annotations

import hmac
from hashlib import sha256

from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.interfaces import ICSRFStoragePolicy
from zope.interface import implementer

from guestguard.keys import derive_key


@implementer(ICSRFStoragePolicy)
class LoginBoundCSRF:
    def __init__(self, settings):
        self.key = derive_key(settings, "csrf-token")
        self.before_login = SessionCSRFStoragePolicy()

    def _of_login(self, request) -> str | None:
        identity = request.identity
        if identity is None or identity.method != "cookie" or identity.session is None:
            return None
        return hmac.new(self.key, f"login:{identity.session.id}".encode(), sha256).hexdigest()

    def new_csrf_token(self, request) -> str:
        return self._of_login(request) or self.before_login.new_csrf_token(request)

    def get_csrf_token(self, request) -> str:
        return self._of_login(request) or self.before_login.get_csrf_token(request)

    def check_csrf_token(self, request, supplied_token: str) -> bool:
        expected = self.get_csrf_token(request)
        return isinstance(supplied_token, str) and hmac.compare_digest(
            expected.encode(), supplied_token.encode("utf-8", "surrogatepass"))
