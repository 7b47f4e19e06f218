"""The event day (part 12 of ``make bench``), in process against PostgreSQL
(the database and Redis set-up of part 5, benchmarks/events.py).

1. The door: 20 doors (threads, each its own WSGI client and its own door
   staff bearer) check in 1,000 passes at once, each pass scanned at two
   different doors (the race the unique index settles), through
   ``POST /api/v1/events/{id}/checkins``. Reported: scans per second, p50/p95
   per scan, and the double check-ins (people admitted more than once: 0
   is the only right answer). The floor: the same number of plain indexed
   UPDATEs (``UPDATE guests SET opened_at = … WHERE id = …``, one
   transaction each) from 20 threads on the same pool.
2. Reminders: 10,000 guests' reminders come due together and two workers
   (threads) run ``reminders.services.dispatch`` at once, queueing into an
   in-memory Huey (delivery is the outbox's, measured in part 2). Reported:
   the time to send all, how many each worker sent, and the guests reminded
   other than exactly once (0 is right). The floor: inserting the same
   10,000 outbox rows in batches of 200, one transaction each. The
   dispatch claims ``reminders.batch_size`` rows per transaction.

Skipped, saying why, without PostgreSQL on 127.0.0.1.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid

from sqlalchemy import func, insert, select, text, update

from benchmarks.events import PG_SERVER, bench_database, percentiles, reachable

DOORS = 20
PASSES = 1_000
SCANS_PER_PASS = 2
REMINDED = 10_000
WORKERS = 2
FLOOR_BATCH = 200  # outbox rows per transaction in the reminders' floor (fixed, so runs compare)


def app_for(db_url: str):
    import webtest

    from guestguard import make_config

    config = make_config({
        "app.env": "test", "db.url": db_url, "huey.url": "memory://", "huey.immediate": "false",
        "log.level": "WARNING", "ratelimit.enabled": "false", "db.pool_size": str(DOORS + 4),
        "passwords.memory_kib": "19456",
        "billing.enforce": "false", "passwords.time_cost": "2", "passwords.parallelism": "1",
    }, environ={})
    return webtest.TestApp(config.make_wsgi_app())


def seed(app, guests: int, response: str = "yes") -> dict:
    """A team (Ada owns it, Sam at the door), one event starting in 30 days,
    ``guests`` guests who said ``response``, each with a link and a pass.
    Bulk inserts; returns ids, the passes' secrets and Sam's bearer."""
    from guestguard.accounts.tokens import hash_token
    from guestguard.checkin import passes
    from guestguard.checkin.models import GuestPass
    from guestguard.events.models import Event, Guest, InvitationLink
    from guestguard.testing import create_team, in_request, session_bearer

    registry = app.app.registry
    workspace_id = uuid.UUID(in_request(registry, create_team))
    now = dt.datetime.now(dt.UTC)
    event_id = uuid.uuid4()
    guest_rows, link_rows, pass_rows, secrets = [], [], [], []
    for n in range(guests):
        guest_id, link_id, token = uuid.uuid4(), uuid.uuid4(), f"bench-token-{uuid.uuid4().hex}{n:06d}"
        secret = passes.secret_for(registry.settings, token)
        secrets.append(secret)
        guest_rows.append({"id": guest_id, "workspace_id": workspace_id, "event_id": event_id,
                           "name": f"Guest {n:05d}", "email": f"guest{n}@example.com", "plus_ones_allowed": 0,
                           "group_name": "", "tags": [], "notes": "", "response": response, "plus_ones_coming": 0,
                           "responded_at": now - dt.timedelta(days=1), "created_at": now - dt.timedelta(days=2),
                           "updated_at": now})
        link_rows.append({"id": link_id, "workspace_id": workspace_id, "event_id": event_id, "guest_id": guest_id,
                          "token_hash": hash_token(token), "created_at": now})
        pass_rows.append({"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event_id,
                          "guest_id": guest_id, "link_id": link_id, "secret_hash": hash_token(secret),
                          "code": f"{n:08d}", "created_at": now})

    def write(request):
        request.db.execute(insert(Event.__table__).values(
            id=event_id, workspace_id=workspace_id, name="Bench Gala", description="", venue="Hall",
            starts_at=now + dt.timedelta(days=30), timezone="Europe/London", default_plus_ones=0,
            host_message="", status="published", host_name="Ada", theme_colour="", ask_plus_one_names=False,
            questions=[], reminders=["7d", "1d"], sequence=0, notified_sequence=0, created_at=now,
            updated_at=now))
        for table, rows in ((Guest.__table__, guest_rows), (InvitationLink.__table__, link_rows),
                            (GuestPass.__table__, pass_rows)):
            for start in range(0, len(rows), 1000):
                request.db.execute(insert(table), rows[start:start + 1000])
        request.db.execute(text("ANALYZE"))

    in_request(registry, write)
    return {"event_id": event_id, "secrets": secrets, "guest_ids": [row["id"] for row in guest_rows],
            "sam": session_bearer(registry, "sam@example.com"), "starts_at": now + dt.timedelta(days=30)}


def run_threads(count: int, work) -> float:
    barrier = threading.Barrier(count)
    threads = [threading.Thread(target=lambda n=n: (barrier.wait(), work(n))) for n in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def doors(db_url: str) -> None:
    from guestguard.checkin.models import Admission
    from guestguard.events.models import Guest
    from guestguard.testing import new_client

    app = app_for(db_url)
    data = seed(app, PASSES)
    scans = [secret for secret in data["secrets"] for _ in range(SCANS_PER_PASS)]
    random.Random(7).shuffle(scans)
    # Each door takes every 20th scan; a pass's two scans fall to different doors.
    queues = [scans[n::DOORS] for n in range(DOORS)]
    samples: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    url = f"/api/v1/events/{data['event_id']}/checkins"

    def door(n: int) -> None:
        client = new_client(app.app, REMOTE_ADDR=f"198.51.100.{n + 1}")
        for code in queues[n]:
            start = time.perf_counter()
            status = client.post_json(url, {"code": code, "scan_id": uuid.uuid4().hex}, headers=data["sam"],
                                      status="*").status_int
            elapsed = time.perf_counter() - start
            with lock:
                samples.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    elapsed = run_threads(DOORS, door)
    engine = app.app.registry["db.engine"]
    with engine.connect() as connection:
        admitted = connection.execute(select(func.count()).select_from(Admission)).scalar()
        doubles = connection.execute(select(func.count()).select_from(
            select(Admission.guest_id).group_by(Admission.guest_id, Admission.seat)
            .having(func.count() > 1).subquery())).scalar()
    ids = data["guest_ids"] * SCANS_PER_PASS
    random.Random(7).shuffle(ids)
    floor_samples: list[float] = []

    def plain(n: int) -> None:
        for guest_id in ids[n::DOORS]:
            start = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(update(Guest).where(Guest.id == guest_id).values(opened_at=func.now()))
            with lock:
                floor_samples.append(time.perf_counter() - start)

    floor_elapsed = run_threads(DOORS, plain)
    p50, p95 = percentiles(samples)
    f50, f95 = percentiles(floor_samples)
    total = len(scans)
    print(f"door: {DOORS} doors, {PASSES} passes each scanned at {SCANS_PER_PASS} doors ({total} scans)")
    print(f"  answers: {dict(sorted(statuses.items()))}; admitted {admitted}, double check-ins {doubles}")
    print(f"  check-in   {total / elapsed:8.0f} scans/s   p50 {p50 * 1e3:6.1f} ms   p95 {p95 * 1e3:6.1f} ms")
    print(f"  floor      {total / floor_elapsed:8.0f} UPDATE/s  p50 {f50 * 1e3:6.1f} ms   p95 {f95 * 1e3:6.1f} ms")
    print(f"  ratio      throughput {(total / elapsed) / (total / floor_elapsed):.2f} x of the floor, "
          f"p95 {p95 / f95:.1f} x")
    engine.dispose()


def reminders(db_url: str) -> None:
    from pyramid.scripting import prepare

    from guestguard.notifications.models import Notification
    from guestguard.reminders import services
    from guestguard.reminders.models import ScheduledMessage

    app = app_for(db_url)
    data = seed(app, REMINDED)
    registry = app.app.registry
    due = services.due_at(data["starts_at"], "Europe/London", "7d")
    results: list = [None] * WORKERS

    def worker(n: int) -> None:
        with prepare(registry=registry) as env:
            results[n] = services.dispatch(env["request"], now=due + dt.timedelta(seconds=30))

    elapsed = run_threads(WORKERS, worker)
    engine = registry["db.engine"]
    with engine.connect() as connection:
        not_once = connection.execute(select(func.count()).select_from(
            select(ScheduledMessage.guest_id).where(ScheduledMessage.state == "sent")
            .group_by(ScheduledMessage.guest_id).having(func.count() != 1).subquery())).scalar()
        sent_rows = connection.execute(select(func.count()).select_from(ScheduledMessage)
                                       .where(ScheduledMessage.state == "sent")).scalar()
        outbox = connection.execute(select(func.count()).select_from(Notification)
                                    .where(Notification.template == "reminder")).scalar()
    rows = [{"id": uuid.uuid4(), "channel": "email", "recipient": f"guest{n}@example.com",
             "template": "reminder", "kind": "guest", "context": {"guest_name": f"Guest {n:05d}"}}
            for n in range(REMINDED)]
    start = time.perf_counter()
    size = FLOOR_BATCH
    for batch in range(0, REMINDED, size):
        with engine.begin() as connection:
            connection.execute(insert(Notification.__table__), rows[batch:batch + size])
    floor = time.perf_counter() - start
    print(f"reminders: {REMINDED} due at once, {WORKERS} workers")
    print(f"  sent by each worker: {[result.sent for result in results]}; rows sent {sent_rows}, outbox rows "
          f"{outbox}, guests reminded other than once: {not_once}")
    print(f"  dispatch {elapsed:6.1f} s ({REMINDED / elapsed:6.0f}/s); floor (plain outbox inserts) {floor:6.1f} s; "
          f"ratio {elapsed / floor:.1f} x")
    engine.dispose()


def main() -> None:
    print("the event day in process (PostgreSQL)")
    problem = reachable(PG_SERVER)
    if problem:
        print(f"  skipped: {problem}")
        return
    with bench_database() as (_, db_url):
        doors(db_url)
    with bench_database() as (_, db_url):
        reminders(db_url)


if __name__ == "__main__":
    main()
