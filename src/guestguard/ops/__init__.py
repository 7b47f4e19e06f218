"""Operations: health, readiness and the ``guestguard`` command."""
from __future__ import annotations


def includeme(config) -> None:
    config.add_route("health", "/health")
    config.add_route("readyz", "/readyz")
    config.scan(".views")
