"""Fan-out through the worker (part 10 of ``make bench``): one "send to
everyone" for an event of 5,000 guests, delivered by a ``guestguard worker``
process (its run_worker, 8 task threads) to a provider that accepts every
message and does nothing else, on PostgreSQL and Redis, against the floor of
the same run: 5,000 Huey tasks that do nothing but count themselves, through
the same worker and queue.

The measured figure is messages per second from the commit of the send to
the last notification marked sent (each through the outbox's claim, render,
provider and record, with its link sealed and unsealed); the issue's aims:
at least 1,000 a second, and at least half the floor's rate. The send's own
time (issuing 5,000 links and queueing 5,000 rows in one transaction) is
shown beside it, and, after the measured figure, how long the worker
takes to deliver the domain events the send and the messages made
(``invitation.issued``, ``invitation.sent``, ``notification.sent`` per
guest). Skipped, saying why, without PostgreSQL or Redis.
GG_BENCH_FANOUT sets the number of guests, GG_BENCH_FANOUT_LIMIT the
seconds either run may take, GG_BENCH_FANOUT_THREADS the worker's threads
(8) and GG_BENCH_FANOUT_WORKERS how many worker processes share the queue
(1; the floor runs through them too).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from guestguard.plugins import hookimpl

from benchmarks.events import PG_SERVER, REDIS_URL, bench_database, reachable
from benchmarks.guard import cpu_seconds
from benchmarks.hotpath import backends

GUESTS = int(os.environ.get("GG_BENCH_FANOUT", "5000"))
THREADS = int(os.environ.get("GG_BENCH_FANOUT_THREADS", "8"))
WORKERS = int(os.environ.get("GG_BENCH_FANOUT_WORKERS", "1"))
TIME_LIMIT = float(os.environ.get("GG_BENCH_FANOUT_LIMIT", "900"))
COUNTER = "bench:fanout:noops"
WORKER_APPLICATION = "bench-fanout-worker"
REPO = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys
from guestguard import make_config
from guestguard.tasks import run_worker
from benchmarks.fanout import BenchPlugin
settings = json.loads(sys.argv[1])
config = make_config(settings, environ={}, extra_plugins=[("bench", BenchPlugin())])
config.make_wsgi_app()
print("ready", flush=True)
sys.exit(run_worker(config.registry, int(sys.argv[2])))
"""


class NullProvider:
    """Accepts every email at once and keeps nothing."""

    name = "null"
    channels = ("email",)

    def send(self, message) -> str:
        return f"null-{message.notification_id}"


def count_noop(request) -> None:
    """The floor's task: nothing but counting itself (in Redis)."""
    request.registry["bench.counter"].incr(COUNTER)


class BenchPlugin:
    @hookimpl
    def register_notification_providers(self, settings):
        return [NullProvider()]

    @hookimpl
    def configure(self, config):
        import redis

        config.registry["bench.counter"] = redis.Redis.from_url(REDIS_URL)
        config.add_task(count_noop, in_transaction=False)


def settings_for(db_url: str) -> dict[str, str]:
    return {
        "app.env": "test", "app.base_url": "https://bench.example", "db.url": db_url, "huey.url": REDIS_URL,
        "huey.immediate": "false", "huey.name": "fanout", "notifications.email.provider": "null",
        "notifications.sms.provider": "", "ratelimit.enabled": "false", "log.level": "WARNING",
        "passwords.memory_kib": "19456",
        "billing.enforce": "false", "passwords.time_cost": "2", "passwords.parallelism": "1",
    }


def wait_for(done, what: str) -> None:
    """Return once ``done()`` is true; RuntimeError after TIME_LIMIT seconds."""
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > TIME_LIMIT:
            raise RuntimeError(f"{what} did not finish within {TIME_LIMIT:.0f} s")
        time.sleep(0.02)


def seed_event(request) -> uuid.UUID:
    from sqlalchemy import insert

    from guestguard.db import utcnow
    from guestguard.events import services
    from guestguard.events.models import Guest
    from guestguard.events.schemas import EventFields
    from guestguard.testing import create_user
    from guestguard.workspaces.services import memberships_of

    user = create_user(request, "host@bench.example", "Bench Host")
    workspace_id = memberships_of(request.db, user.id)[0].workspace_id
    event = services.create_event(request.ctx, workspace_id, EventFields(
        name="Fan-out", starts_at=utcnow() + dt.timedelta(days=30), timezone="UTC", status="published"))
    now = utcnow()
    request.db.execute(insert(Guest), [
        {"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event.id, "name": f"Guest {i:05d}",
         "email": f"g{i}@bench.example", "tags": [], "created_at": now, "updated_at": now}
        for i in range(GUESTS)])
    return event.id


def in_request(registry, work):
    from pyramid.scripting import prepare

    with prepare(registry=registry) as env:
        request = env["request"]
        with request.tm:
            return work(request)


def floor_run(registry, counter) -> float:
    """Seconds from queueing GUESTS no-op tasks to the last one run."""
    from guestguard.tasks import enqueue

    counter.delete(COUNTER)
    started = time.perf_counter()
    in_request(registry, lambda request: [enqueue(request, count_noop) for _ in range(GUESTS)])
    wait_for(lambda: int(counter.get(COUNTER) or 0) >= GUESTS, "the no-op tasks")
    return time.perf_counter() - started


class Cpu:
    """CPU seconds the worker processes and their PostgreSQL backends have
    used since ``start``."""

    def __init__(self, database: str, workers: list[int]):
        self.database, self.workers = database, workers

    def read(self) -> tuple[float, float]:
        return cpu_seconds(*self.workers), cpu_seconds(*backends(self.database, WORKER_APPLICATION))

    def start(self) -> None:
        self.at_start = self.read()

    def since(self) -> tuple[float, float]:
        now = self.read()
        return now[0] - self.at_start[0], now[1] - self.at_start[1]


def send_run(registry, log, cpu: Cpu) -> tuple[float, float, float, tuple[float, float]]:
    """(seconds from the send to the last invitation sent, the send's own,
    from the send to the last domain event delivered, the workers' and their
    PostgreSQL backends' CPU seconds from the send's commit to the last
    invitation sent)."""
    from sqlalchemy import func, select

    from guestguard.domain import DELIVERED, DomainEventRow
    from guestguard.events import invitations, services
    from guestguard.notifications.models import Notification
    from guestguard.tasks import SUCCEEDED

    event_id = in_request(registry, seed_event)
    started = time.perf_counter()
    cpu.start()
    in_request(registry, lambda request: invitations.send_all(request.ctx, services.find_event(request.db, event_id)))
    queued = time.perf_counter() - started

    def count(model, *where):
        return in_request(registry, lambda request: request.db.scalar(
            select(func.count()).select_from(model).where(*where)))

    try:
        wait_for(lambda: count(Notification, Notification.status == SUCCEEDED) >= GUESTS, "the invitations")
        delivered = time.perf_counter() - started
        used = cpu.since()
        wait_for(lambda: count(DomainEventRow, DomainEventRow.status != DELIVERED) == 0, "the domain events")
    except RuntimeError as late:
        states = in_request(registry, lambda request: dict(request.db.execute(
            select(Notification.status, func.count()).group_by(Notification.status)).all()))
        log.flush()
        raise RuntimeError(f"{late}; notifications by status: {states}; the worker's log ends:\n"
                           f"{Path(log.name).read_text()[-3000:]}") from None
    return delivered, queued, time.perf_counter() - started, used


def main() -> None:
    print(f"fan-out: one send to {GUESTS:,} guests through {WORKERS} worker process(es) ({THREADS} threads "
          "each) to a null provider, PostgreSQL, Redis")
    problem = reachable(PG_SERVER)
    if problem:
        print(f"  skipped: {problem}")
        return
    import redis

    from guestguard import make_config

    counter = redis.Redis.from_url(REDIS_URL)
    with tempfile.TemporaryDirectory() as tmp, bench_database() as (database, db_url):
        settings = settings_for(db_url)
        worker_settings = settings_for(f"{db_url}?application_name={WORKER_APPLICATION}")
        registry = make_config(settings, environ={}, extra_plugins=[("bench", BenchPlugin())]).make_wsgi_app().registry
        log = (Path(tmp) / "worker.log").open("w")
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(worker_settings), str(THREADS)],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True) for _ in range(WORKERS)]
        try:
            for worker in workers:
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a worker did not start: {Path(log.name).read_text()[-2000:]}")
            floor = floor_run(registry, counter)
            cpu = Cpu(database, [worker.pid for worker in workers])
            delivered, queued, events, (worker_cpu, pg_cpu) = send_run(registry, log, cpu)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
            log.close()
            registry["db.engine"].dispose()
    counter.close()
    floor_rate, rate = GUESTS / floor, GUESTS / delivered
    print(f"  floor     {floor_rate:8.0f} tasks/s     ({GUESTS:,} no-op tasks in {floor:.1f} s)")
    print(f"  measured  {rate:8.0f} messages/s  ({GUESTS:,} invitations in {delivered:.1f} s, "
          f"of which the send's transaction {queued:.1f} s)")
    print(f"  ratio     {rate / floor_rate:8.2f} x   (aims: >= 1,000 messages/s and >= 0.5 x)")
    print(f"  CPU per message until the last was sent: worker {worker_cpu * 1e3 / GUESTS:.2f} ms, its PostgreSQL "
          f"backends {pg_cpu * 1e3 / GUESTS:.2f} ms (with the domain events delivered "
          "meanwhile included)")
    print(f"  and the domain events all delivered {events:.1f} s after the send ({events - delivered:.1f} s after "
          "the last message)")


if __name__ == "__main__":
    # Through the module's own name: the worker looks the floor's task up
    # as benchmarks.fanout.count_noop, not __main__.count_noop.
    from benchmarks.fanout import main as run_alone

    run_alone()
