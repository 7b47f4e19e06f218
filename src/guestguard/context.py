"""What a service is given: one small frozen context instead of the request.

Views build it from the request (``request.ctx``, one per request); tasks
from what they stored when they were queued (``context_of(request,
client_ip=ip)``). A service reads the database, settings, who is acting and
from where, and queues work after commit through it, and through nothing
else, so it behaves the same in a web request, a task or the CLI.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from pyramid.interfaces import IRoutesMapper

from guestguard import domain, tasks
from guestguard.ratelimit import enforce

if TYPE_CHECKING:
    from pyramid.registry import Registry
    from sqlalchemy.orm import Session
    from transaction import TransactionManager

    from guestguard.plugins import DomainEvent


def _no_limit(policy_name: str, cost: int = 1) -> None:
    """Work a task does was limited when it was asked for."""


@dataclasses.dataclass(frozen=True)
class Context:
    db: Session
    registry: Registry
    tm: TransactionManager
    identity: Any = None  # the security policy's Identity, None when nobody signed in
    client_ip: str = ""
    user_agent: str = ""
    request_id: str | None = None
    # Counts against a rate-limit policy for the caller; raises RateLimited
    # when over. Bound to the request that asked, a no-op in tasks.
    limit: Callable[..., None] = _no_limit

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.registry.settings

    @property
    def actor_id(self) -> uuid.UUID | None:
        """The person acting, for audit rows: None for an API key, a guest's
        link or a task."""
        identity = self.identity
        return identity.user.id if identity is not None and identity.user is not None else None

    def enqueue(self, func: Callable[..., Any], *args: Any,
                delay: float | None = None, eta: dt.datetime | None = None) -> None:
        """Run a registered task once this transaction commits."""
        tasks.enqueue(self, func, *args, delay=delay, eta=eta)

    def emit(self, name: str, data: Mapping[str, Any], workspace_id: uuid.UUID | None = None,
             aggregate: str | None = None) -> DomainEvent:
        """Record a domain event in this transaction; plugins hear it once it
        commits (at least once, in order per aggregate)."""
        return domain.emit(self, name, data, workspace_id, aggregate)

    def url(self, route_name: str, _query: Mapping[str, str] | None = None, **parts: Any) -> str:
        """An absolute link for emails and messages: ``app.base_url``, never
        the Host header of whoever asked."""
        route = self.registry.getUtility(IRoutesMapper).get_route(route_name)
        if route is None:
            raise KeyError(f"no route named {route_name!r}")
        url = self.settings["app.base_url"].rstrip("/") + route.generate(parts)
        return f"{url}?{urlencode(_query)}" if _query else url

    def replace(self, **changes: Any) -> Context:
        return dataclasses.replace(self, **changes)


def context_of(request, **stored: Any) -> Context:
    """The context of a web request or a task's request-like environment;
    ``stored`` overrides what a task recorded when it was queued (the
    client address that asked, ...)."""
    values: dict[str, Any] = {
        "db": request.db,
        "registry": request.registry,
        "tm": request.tm,
        "identity": request.identity,
        "client_ip": request.client_ip,
        "user_agent": request.headers.get("User-Agent", ""),
        "request_id": getattr(request, "request_id", None),
    }
    if getattr(request, "matched_route", None) is not None:
        values["limit"] = lambda policy_name, cost=1: enforce(request, policy_name, cost)
    values.update(stored)
    return Context(**values)


def includeme(config) -> None:
    config.add_request_method(context_of, "ctx", reify=True)
