"""Passes and door check-in. Routes are declared in ``routes.py``."""
from __future__ import annotations


def includeme(config) -> None:
    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
