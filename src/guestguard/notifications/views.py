from __future__ import annotations

from pyramid.view import view_config


@view_config(route_name="dev_outbox", renderer="dev/outbox.jinja2", request_method="GET")
def dev_outbox(request):
    """Development only: the messages the console provider delivered."""
    console = request.registry["notifications.providers_by_name"].get("console")
    return {"messages": list(console.messages) if console else []}
