"""Every route of the accounts area: pages and API."""
from __future__ import annotations

WEB_ROUTES = (
    ("signup", "/signup", None),
    ("login", "/login", None),
    ("logout", "/logout", None),
    ("verify_email", "/verify-email/{token}", None),
    ("resend_verification", "/verify-email", None),
    ("forgot_password", "/forgot-password", None),
    ("reset_password", "/reset-password/{token}", None),
    ("account", "/account", None),
    ("account_profile", "/account/profile", None),
    ("account_password", "/account/password", None),
    ("account_session_revoke", "/account/sessions/{session_id}/revoke", None),
    ("account_sign_out_everywhere", "/account/sign-out-everywhere", None),
    ("accept_policies", "/accept-policies", None),
    ("privacy", "/privacy", None),
    ("terms", "/terms", None),
)

API_ROUTES = (
    ("api_signup", "/api/v1/auth/signup", None),
    ("api_verify_email", "/api/v1/auth/verify-email", None),
    ("api_resend_verification", "/api/v1/auth/resend-verification", None),
    ("api_login", "/api/v1/auth/login", None),
    ("api_refresh", "/api/v1/auth/refresh", None),
    ("api_logout", "/api/v1/auth/logout", None),
    ("api_logout_all", "/api/v1/auth/logout-all", None),
    ("api_forgot_password", "/api/v1/auth/forgot-password", None),
    ("api_reset_password", "/api/v1/auth/reset-password", None),
    ("api_me", "/api/v1/me", None),
    ("api_me_password", "/api/v1/me/password", None),
    ("api_me_sessions", "/api/v1/me/sessions", None),
    ("api_me_session", "/api/v1/me/sessions/{session_id}", None),
    ("api_me_accept_policies", "/api/v1/me/accept-policies", None),
)


def includeme(config) -> None:
    config.add_routes(WEB_ROUTES + API_ROUTES)
