"""Accounts: users, login sessions, tokens, passwords, the login flows in
the web UI (views.py) and the JSON API (api.py)."""
from __future__ import annotations


def includeme(config) -> None:
    from guestguard.accounts import services
    from guestguard.accounts.passwords import Passwords

    config.registry["accounts.passwords"] = Passwords(config.get_settings())
    config.add_task(services.forgot_password_task)
    config.add_task(services.resend_verification_task)
    config.include(".routes")
    config.scan(".views")
    config.scan(".api")
