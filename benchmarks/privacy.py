"""Forgetting a guest (part 13 of ``make bench``): the whole forget (every
area's privacy job, in one transaction) of one guest with a message, when
the notifications table holds 200,000 other messages, against the same
forget when it holds only the guests' own (the floor); and the statement
that finds a guest's messages, through the indexed ``guest_id`` against
the JSON match of ``about`` it replaced. Retention forgets every guest of
an event in turn, so this cost is paid once per guest.

PostgreSQL (a database made for the run); skipped, saying why, without it.
"""
from __future__ import annotations

import time
import uuid

from sqlalchemy import text

from benchmarks.eventday import app_for
from benchmarks.events import PG_SERVER, bench_database, percentiles, reachable

GUESTS = 200            # forgotten: half for the floor, half measured
OTHER_MESSAGES = 200_000
LOOKUPS = 200


def add_guests(app, host: dict, count: int) -> list[str]:
    body = [{"name": f"Guest {n:04d}", "email": f"guest{n}@example.com"} for n in range(count)]
    return [guest["id"] for start in range(0, count, 100)
            for guest in app.post_json(f"{host['url']}/guests", body[start:start + 100],
                                       headers=host["ada"]).json["guests"]]


def host_with_event(app) -> dict:
    from guestguard.testing import create_team, in_request, session_bearer

    registry = app.app.registry
    workspace_id = in_request(registry, create_team)
    ada = session_bearer(registry, "ada@example.com")
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Gala", "timezone": "UTC",
                                             "starts_at": "2031-01-01T18:00", "status": "published"},
                          headers=ada).json["event"]
    return {"workspace": workspace_id, "ada": ada, "url": f"/api/v1/events/{event['id']}", "event": event["id"]}


MESSAGES_OF = text("""
    INSERT INTO notifications (id, workspace_id, channel, recipient, template, kind, context, about, guest_id,
                               status, attempts, next_attempt_at, delivery_state, created_at, updated_at)
    SELECT gen_random_uuid(), CAST(:workspace AS uuid), 'email', 'guest@example.com', 'invitation', 'guest',
           '{}'::jsonb, jsonb_build_object('event_id', CAST(:event AS text), 'guest_id', g), CAST(g AS uuid),
           'succeeded', 1, now(), 'sent', now(), now()
    FROM unnest(CAST(:guests AS text[])) AS g""")
OTHERS = text("""
    INSERT INTO notifications (id, workspace_id, channel, recipient, template, kind, context, about, guest_id,
                               status, attempts, next_attempt_at, delivery_state, created_at, updated_at)
    SELECT gen_random_uuid(), CAST(:workspace AS uuid), 'email', 'x' || n || '@example.com', 'invitation', 'guest',
           '{}'::jsonb, jsonb_build_object('event_id', CAST(:event AS text), 'guest_id', o::text), o,
           'succeeded', 1, now(), 'sent', now(), now()
    FROM (SELECT n, gen_random_uuid() AS o FROM generate_series(1, :count) AS n) AS others""")


def forget_each(app, guest_ids: list[str]) -> list[float]:
    from guestguard.privacy.services import forget_guest
    from guestguard.testing import in_request

    samples = []
    for guest_id in guest_ids:
        started = time.perf_counter()
        in_request(app.app.registry, lambda request, g=guest_id: forget_guest(request.ctx, uuid.UUID(g)))
        samples.append(time.perf_counter() - started)
    return samples


def lookups(engine, where: str, guest_ids: list[str]) -> list[float]:
    samples = []
    with engine.connect() as connection:
        for guest_id in guest_ids:
            started = time.perf_counter()
            connection.execute(text(f"SELECT id FROM notifications WHERE {where}"), {"g": guest_id}).all()
            samples.append(time.perf_counter() - started)
    return samples


def line(what: str, floor: list[float], measured: list[float]) -> None:
    (f50, f95), (m50, m95) = percentiles(floor), percentiles(measured)
    print(f"{what}: floor p50 {f50 * 1000:.2f} ms p95 {f95 * 1000:.2f} ms, measured p50 {m50 * 1000:.2f} ms "
          f"p95 {m95 * 1000:.2f} ms, ratio p50 {m50 / f50:.2f}x p95 {m95 / f95:.2f}x")


def main() -> int:
    reason = reachable(PG_SERVER)
    if reason:
        print(f"forgetting a guest: skipped, {reason}")
        return 0
    with bench_database() as (_, db_url):
        app = app_for(db_url)
        host = host_with_event(app)
        guests = add_guests(app, host, GUESTS)
        engine = app.app.registry["db.engine"]
        with engine.begin() as connection:
            connection.execute(MESSAGES_OF, {"workspace": host["workspace"], "event": host["event"],
                                             "guests": guests})
            connection.execute(text("ANALYZE notifications"))
        floor = forget_each(app, guests[:GUESTS // 2])
        with engine.begin() as connection:
            connection.execute(OTHERS, {"workspace": host["workspace"], "event": host["event"],
                                        "count": OTHER_MESSAGES})
            connection.execute(text("ANALYZE notifications"))
        measured = forget_each(app, guests[GUESTS // 2:])
        line(f"forget one guest: {OTHER_MESSAGES:,} other messages vs none", floor, measured)
        sample = (guests * (LOOKUPS // len(guests) + 1))[:LOOKUPS]
        line(f"a guest's messages among {OTHER_MESSAGES:,}: JSON match of about (the old way) vs the guest_id "
             "index (floor)",
             lookups(engine, "guest_id = CAST(:g AS uuid)", sample),
             lookups(engine, "about ->> 'guest_id' = :g", sample))
        engine.dispose()
    return 0


if __name__ == "__main__":
    main()
