"""Events, guest lists, personal invitation links, RSVPs and the guest's
pages. Its routes are declared in ``routes.py``."""
from __future__ import annotations


def includeme(config) -> None:
    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
    config.scan(".links_api")
    config.scan(".guest_views")
