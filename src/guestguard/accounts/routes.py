"""Every route of the accounts area: pages and API."""
from __future__ import annotations

WEB_ROUTES = (
    ("signup", "/signup"),
    ("login", "/login"),
    ("logout", "/logout"),
    ("verify_email", "/verify-email/{token}"),
    ("resend_verification", "/verify-email"),
    ("forgot_password", "/forgot-password"),
    ("reset_password", "/reset-password/{token}"),
    ("account", "/account"),
    ("account_profile", "/account/profile"),
    ("account_password", "/account/password"),
    ("account_session_revoke", "/account/sessions/{session_id}/revoke"),
    ("account_sign_out_everywhere", "/account/sign-out-everywhere"),
    ("accept_policies", "/accept-policies"),
    ("privacy", "/privacy"),
    ("terms", "/terms"),
)

API_ROUTES = (
    ("api_signup", "/api/v1/auth/signup"),
    ("api_verify_email", "/api/v1/auth/verify-email"),
    ("api_resend_verification", "/api/v1/auth/resend-verification"),
    ("api_login", "/api/v1/auth/login"),
    ("api_refresh", "/api/v1/auth/refresh"),
    ("api_logout", "/api/v1/auth/logout"),
    ("api_logout_all", "/api/v1/auth/logout-all"),
    ("api_forgot_password", "/api/v1/auth/forgot-password"),
    ("api_reset_password", "/api/v1/auth/reset-password"),
    ("api_me", "/api/v1/me"),
    ("api_me_password", "/api/v1/me/password"),
    ("api_me_sessions", "/api/v1/me/sessions"),
    ("api_me_session", "/api/v1/me/sessions/{session_id}"),
    ("api_me_accept_policies", "/api/v1/me/accept-policies"),
)


def includeme(config) -> None:
    for name, pattern in WEB_ROUTES + API_ROUTES:
        config.add_route(name, pattern)
