"""Request ids, logging setup and (later) the audit log."""
from __future__ import annotations

from pyramid.tweens import INGRESS

from guestguard.audit.logging import configure_logging


def includeme(config) -> None:
    configure_logging(config.get_settings())
    config.add_tween("guestguard.audit.request_id.request_id_tween_factory", under=INGRESS)
