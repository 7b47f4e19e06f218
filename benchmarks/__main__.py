"""``make bench``: costs reported as ratios against a floor measured in the
same run, so the figures compare across machines. Nothing here asserts.

1. Request overhead: GuestGuard's ``/health`` through every tween (request
   id, security headers, retry, transaction) against a bare Pyramid app
   answering the same JSON.
2. Outbox: queueing and delivering a notification (row, after-commit
   enqueue, claim, render, console provider, record) against inserting the
   same row with nothing else.
3. Rate limiter: an API request with the limiter counting in Redis against
   the same request with limits turned off, and the Redis commands one check
   costs (needs GG_BENCH_REDIS_URL or a Redis on 127.0.0.1:6379).
4. Login timing: a login with an unknown email against one with a wrong
   password (the floor), at the production argon2id cost. A ratio near 1.0
   means the answer time does not tell whether an address has an account.
5. Events under gunicorn with PostgreSQL and Redis (benchmarks/events.py):
   the invitation page and RSVP at 50 concurrent clients against /health,
   and one guest-list page of a 100,000-guest event against a 1,000-guest
   one. Skipped, saying why, without PostgreSQL or Redis on 127.0.0.1.
6. The guard under gunicorn (benchmarks/guard.py): the invitation page with
   the access log and rules on (a ``guestguard worker`` competing for the
   CPU) against the guard off, same run, /health the floor; and the idle
   live streams one worker process holds under gevent and under gthread,
   with its memory per stream, the fan-out time of one RSVP and /health
   meanwhile. Skipped like part 5; the gevent run without gevent.
7. The guest's hot path under wrk (benchmarks/hotpath.py): the invitation
   page, an answer and a host's guest-list page at 16 and 64 connections,
   GuestGuard against a floor app (benchmarks/floor.py: Pyramid, SQLAlchemy
   Core, psycopg 3 and Jinja2 doing the same essential SQL) under the same
   gunicorn, with CPU per request, worker memory and SQL statements per
   request. Skipped like part 5, and without wrk.
8. Guest-list imports (benchmarks/imports.py): a 5,000-row CSV and XLSX
   through the preview and the import against parsing the same file plus
   one bulk insert, and the memory each adds; on PostgreSQL when it
   answers on 127.0.0.1, else SQLite.
9. The guard's judgement (``guestguard guard evaluate``): the scenario
   corpus replayed through the invitation pages, and each access rule's
   precision, recall and false-positive rate on the tuning and held-out
   halves. Not a speed: how often a host is told the truth.
10. Fan-out through the worker (benchmarks/fanout.py): one send to 5,000
   guests delivered by a worker process to a null provider, against 5,000
   no-op Huey tasks through the same worker and queue. Skipped like part 5.
11. Webhook intake (benchmarks/webhooks.py): signed SNS notifications
   verified and stored through ``POST /webhooks/ses`` against a bare insert
   of the same inbox rows. Skipped without guestguard-ses.
12. The event day (benchmarks/eventday.py): 20 doors checking in 1,000
   passes at once (double check-ins counted) against plain indexed UPDATEs,
   and 10,000 due reminders sent by 2 workers at once (each exactly once)
   against plain outbox inserts. Skipped like part 5.
13. Forgetting a guest (benchmarks/privacy.py): the whole forget of one
   guest among 200,000 other messages against the same with none, and the
   lookup of a guest's messages by the guest_id index against the JSON match
   it replaced. Skipped without PostgreSQL.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import webtest
from pyramid.config import Configurator
from pyramid.scripting import prepare

from guestguard import make_config
from guestguard.guard import evaluation
from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.testing import migrate

from benchmarks import eventday, events, fanout, guard, hotpath, imports, privacy, webhooks

REQUESTS = 2000
MESSAGES = 300
LOGINS = 40


def timed(func, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def bare_app():
    config = Configurator()
    config.add_route("health", "/health")
    config.add_view(lambda request: {"status": "ok"}, route_name="health", renderer="json")
    return webtest.TestApp(config.make_wsgi_app())


def guestguard_app(db_url: str, extra: dict | None = None, production_passwords: bool = False):
    cheap = {} if production_passwords else {
        "passwords.memory_kib": "19456", "passwords.time_cost": "2", "passwords.parallelism": "1"}
    config = make_config({
        "app.env": "test", "db.url": db_url, "huey.url": "memory://", "huey.immediate": "true",
        "log.level": "WARNING", "billing.enforce": "false", **cheap, **(extra or {}),
    }, environ={})
    return webtest.TestApp(config.make_wsgi_app())


def limiter_report(db_url: str) -> None:
    import os

    import redis

    url = os.environ.get("GG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError:
        print(f"rate limiter: skipped, no Redis at {url}")
        return
    client.flushdb()
    on = guestguard_app(db_url, {"ratelimit.url": url, "ratelimit.api": "1000000/minute"})
    off = guestguard_app(db_url, {"ratelimit.enabled": "false"})
    for app in (on, off):
        for _ in range(50):
            app.get("/api/v1/bench", status=404)
    report("GET /api/v1/... with the limiter in Redis vs limits off",
           timed(lambda: off.get("/api/v1/bench", status=404), REQUESTS),
           timed(lambda: on.get("/api/v1/bench", status=404), REQUESTS))
    client.config_resetstat()
    for _ in range(100):
        on.get("/api/v1/bench", status=404)
    stats = client.info("commandstats")
    # Commands a Lua script runs inside Redis are counted too; a round trip
    # is one top-level call (EVALSHA here).
    scripted = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    print(f"  round trips per check: {scripted / 100:.2f} (one EVALSHA running the moving-window script)")
    client.flushdb()


def report(name: str, floor: list[float], measured: list[float]) -> None:
    floor_p50, floor_p95 = summary(floor)
    p50, p95 = summary(measured)
    print(f"{name}")
    print(f"  floor     p50 {floor_p50 * 1e6:8.0f} us   p95 {floor_p95 * 1e6:8.0f} us")
    print(f"  measured  p50 {p50 * 1e6:8.0f} us   p95 {p95 * 1e6:8.0f} us")
    print(f"  ratio     p50 {p50 / floor_p50:8.2f} x   p95 {p95 / floor_p95:8.2f} x")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        migrate(db_url)
        app = guestguard_app(db_url)
        bare = bare_app()
        for client in (app, bare):  # warm up
            for _ in range(50):
                client.get("/health")
        report("GET /health: GuestGuard stack vs bare Pyramid",
               timed(lambda: bare.get("/health"), REQUESTS),
               timed(lambda: app.get("/health"), REQUESTS))

        registry = app.app.registry

        def in_transaction(work):
            def run():
                with prepare(registry=registry) as env:
                    request = env["request"]
                    with request.tm:
                        work(request)
            return run

        def plain_insert(request):
            request.db.add(Notification(channel="email", recipient="a@example.com",
                                        template="test_message", context={}))

        def queue_and_deliver(request):
            queue_notification(request.ctx, channel="email", recipient="a@example.com",
                               template="test_message", context={"base_url": "https://x"})

        report("notification: queue + deliver (immediate) vs plain row insert",
               timed(in_transaction(plain_insert), MESSAGES),
               timed(in_transaction(queue_and_deliver), MESSAGES))
        registry["db.engine"].dispose()

        limiter_report(db_url)

        login_app = guestguard_app(db_url, {"ratelimit.enabled": "false"}, production_passwords=True)
        login_app.post_json("/api/v1/auth/signup", {
            "email": "bench@example.com", "password": "a long benchmark passphrase",
            "display_name": "Bench", "accept_policies": True})

        def attempt(email):
            return lambda: login_app.post_json("/api/v1/auth/login", {
                "email": email, "password": "not the right passphrase"}, status=(401, 403))

        report("POST /auth/login: unknown email vs wrong password (production argon2id)",
               timed(attempt("bench@example.com"), LOGINS),
               timed(attempt("nobody@example.com"), LOGINS))
        login_app.app.registry["db.engine"].dispose()
    print(f"python {sys.version.split()[0]}, SQLite, {REQUESTS} requests, {MESSAGES} messages, "
          f"{LOGINS} logins")
    events.main()
    guard.main()
    hotpath.main()
    imports.main()
    print("the guard's judgement on the scenario corpus (guestguard guard evaluate)")
    corpus = evaluation.load_corpus()
    print(evaluation.report(evaluation.replay(corpus)))
    print("the same without a network database (address prefixes only)")
    print(evaluation.report(evaluation.replay(corpus, network_database=False)))
    fanout.main()
    webhooks.main()
    eventday.main()
    privacy.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
