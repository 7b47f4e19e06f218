"""The one permission catalogue. Views declare ``permission=`` with these
names; resources grant them through their ``__acl__``."""
from __future__ import annotations

from pyramid.authorization import ALL_PERMISSIONS, Allow, Authenticated

# Your own account: profile, password, sessions.
ACCOUNT = "account"
# Allowed while the user still has to accept updated policies.
ACCOUNT_BASICS = "account.basics"

# Permissions a signed-in user keeps before accepting updated policies.
ALLOWED_BEFORE_POLICY_ACCEPTANCE = frozenset({ACCOUNT_BASICS})


class Root:
    """The root of the resource tree: any signed-in user may manage their
    own account; everything tenant-owned hangs from workspaces below."""

    __name__ = ""
    __parent__ = None
    __acl__ = [
        (Allow, Authenticated, ACCOUNT),
        (Allow, Authenticated, ACCOUNT_BASICS),
        (Allow, "role:admin", ALL_PERMISSIONS),
    ]

    def __init__(self, request):
        self.request = request
