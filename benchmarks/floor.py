"""The floor: the least a web app on this stack can do for a guest's page,
an answer and a host's guest-list page, served by the same gunicorn.

Pyramid + SQLAlchemy Core + psycopg 3 + Jinja2, nothing else: no tweens, no
sessions, no security policy, no ORM, no access rules. Each request does the
essential SQL of GuestGuard's own, in one transaction:

- ``GET /access/{token}``: SHA-256 of the token, one indexed SELECT of
  link ⋈ guest ⋈ event by the hash, one INSERT into ``access_log``, a small
  Jinja2 page;
- ``POST /api/v1/rsvp/{token}``: the same SELECT and INSERT, the guest's row
  locked (FOR NO KEY UPDATE), one INSERT into ``rsvps``, one UPDATE of the
  guest; a JSON answer;
- ``GET /api/v1/events/{event_id}/guests``: one page of 50 guests by
  (name, id), as JSON.

``GG_FLOOR_DB_URL`` names the database (one migrated by GuestGuard, so the
tables, indexes and foreign keys are the same). Run with
``gunicorn 'benchmarks.floor:make_app()'``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid

import jinja2
from pyramid.config import Configurator
from pyramid.response import Response
from sqlalchemy import create_engine, text

PAGE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invitation to {{ event_name }}</title></head>
<body><main><p>Hello {{ guest_name }},</p><h1>You're invited to {{ event_name }}</h1>
<dl><dt>When</dt><dd>{{ starts_at.strftime("%A %d %B %Y, %H:%M") }}</dd>
{% if venue %}<dt>Where</dt><dd>{{ venue }}</dd>{% endif %}</dl>
{% if response %}<p>You said {{ response }}</p>{% endif %}
<form method="post" action="/rsvp/{{ token }}">
{% for value in ("yes", "no", "maybe") %}<label><input type="radio" name="response" value="{{ value }}"
{%- if value == response %} checked{% endif %}> {{ value }}</label>{% endfor %}
<button>Send my answer</button></form></main></body></html>""")

LOOK_UP = text("""
SELECT l.id, l.workspace_id, l.event_id, l.guest_id, g.name, g.response, e.name, e.starts_at, e.venue
FROM invitation_links l JOIN guests g ON g.id = l.guest_id JOIN events e ON e.id = l.event_id
WHERE l.token_hash = :token_hash AND l.revoked_at IS NULL""")
LOG_USE = text("""
INSERT INTO access_log (id, workspace_id, event_id, guest_id, link_id, at, kind, outcome, ip, network,
                        user_agent, device, automated)
VALUES (:id, :workspace_id, :event_id, :guest_id, :link_id, :at, :kind, 'ok', :ip, '', :user_agent, '', false)""")
LOCK = text("SELECT id FROM guests WHERE id = :id FOR NO KEY UPDATE")
ANSWER = text("""
INSERT INTO rsvps (id, workspace_id, event_id, guest_id, link_id, response, plus_ones, dietary, message, created_at)
VALUES (:id, :workspace_id, :event_id, :guest_id, :link_id, :response, 0, '', '', :at)""")
ANSWERED = text("UPDATE guests SET response = :response, responded_at = :at, updated_at = :at WHERE id = :id")
GUESTS = text("""
SELECT id, name, email, response, plus_ones_coming FROM guests WHERE event_id = :event_id
ORDER BY name, id LIMIT 50""")


def use(connection, request, kind: str):
    token = request.matchdict["token"]
    row = connection.execute(LOOK_UP, {"token_hash": hashlib.sha256(token.encode()).hexdigest()}).first()
    if row is None:
        return None
    connection.execute(LOG_USE, {
        "id": uuid.uuid4(), "workspace_id": row[1], "event_id": row[2], "guest_id": row[3], "link_id": row[0],
        "at": dt.datetime.now(dt.UTC), "kind": kind, "ip": request.remote_addr or "",
        "user_agent": request.headers.get("User-Agent", "")[:512]})
    return row


def make_app():
    engine = create_engine(os.environ["GG_FLOOR_DB_URL"], pool_size=10, max_overflow=10)

    def invitation(request):
        with engine.begin() as connection:
            row = use(connection, request, "view")
        if row is None:
            return Response(status=404)
        body = PAGE.render(guest_name=row[4], response=row[5], event_name=row[6], starts_at=row[7], venue=row[8],
                           token=request.matchdict["token"])
        return Response(body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    def rsvp(request):
        response = request.json_body["response"]
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            row = use(connection, request, "answer")
            if row is None:
                return Response(status=404)
            connection.execute(LOCK, {"id": row[3]})
            connection.execute(ANSWER, {"id": uuid.uuid4(), "workspace_id": row[1], "event_id": row[2],
                                        "guest_id": row[3], "link_id": row[0], "response": response, "at": now})
            connection.execute(ANSWERED, {"response": response, "at": now, "id": row[3]})
        return Response(json.dumps({"guest": {"name": row[4], "response": response}, "recorded": True}),
                        content_type="application/json", charset="utf-8", headers={"Cache-Control": "no-store"})

    def guests(request):
        with engine.connect() as connection:
            rows = connection.execute(GUESTS, {"event_id": uuid.UUID(request.matchdict["event_id"])}).all()
        return Response(json.dumps({"guests": [{"id": str(row[0]), "name": row[1], "email": row[2],
                                                "response": row[3], "plus_ones_coming": row[4]} for row in rows]}),
                        content_type="application/json", charset="utf-8")

    config = Configurator()
    for name, pattern, view, method in (("access", "/access/{token}", invitation, "GET"),
                                        ("rsvp", "/api/v1/rsvp/{token}", rsvp, "POST"),
                                        ("guests", "/api/v1/events/{event_id}/guests", guests, "GET"),
                                        ("health", "/health", lambda request: Response("ok"), "GET")):
        config.add_route(name, pattern)
        config.add_view(view, route_name=name, request_method=method)
    return config.make_wsgi_app()
