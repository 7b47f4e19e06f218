"""Workspaces (the tenants), memberships and roles, invitations, API keys,
and the resource tree that authorizes everything tenant-owned."""
from __future__ import annotations


def includeme(config) -> None:
    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
