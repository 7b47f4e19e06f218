"""The unsubscribe pages: a confirmation page, and the one-click POST that
mail clients send (RFC 8058) and the page's button sends too. Neither needs
a login or a CSRF token: the link is the credential, and unsubscribing is
all it can do."""
from __future__ import annotations

from pyramid.renderers import render_to_response
from pyramid.view import view_config

from guestguard import rls
from guestguard.notifications import unsubscribe
from guestguard.workspaces.models import Workspace

PAGE = "guest/unsubscribe.jinja2"


def _answer(request, status: int = 200, **values):
    response = render_to_response(PAGE, {"status": status, **values}, request=request)
    response.status = status
    response.cache_control.no_store = True
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _subscription(request):
    """What the link names, with its workspace; None (counted against the
    caller's invalid_link limit) for a link that names nothing live."""
    subscription = unsubscribe.read_token(request.registry.settings, request.matchdict["token"])
    if subscription is not None:  # its signature is checked: the workspace it names opens
        rls.open_workspace(request.db, subscription.workspace_id)
    workspace = request.db.get(Workspace, subscription.workspace_id) if subscription else None
    if workspace is None or workspace.deleted_at is not None:
        request.ctx.limit("invalid_link")
        return None, None
    return subscription, workspace


@view_config(route_name="unsubscribe", request_method="GET")
def confirm(request):
    subscription, workspace = _subscription(request)
    if subscription is None:
        return _answer(request, 404, invalid=True)
    return _answer(request, sender=workspace.name, address=unsubscribe.masked(subscription.address),
                   channel=subscription.channel)


@view_config(route_name="unsubscribe", request_method="POST", require_csrf=False)
def unsubscribe_now(request):
    subscription, workspace = _subscription(request)
    if subscription is None:
        return _answer(request, 404, invalid=True)
    unsubscribe.unsubscribe(request.ctx, subscription)
    return _answer(request, done=True, sender=workspace.name, channel=subscription.channel)
