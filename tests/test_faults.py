"""Fault tests with real processes and servers of the test's own: a worker
killed with SIGKILL mid-send, a PostgreSQL that stops. Marked ``faults``
(bounded, a few seconds to half a minute each); ``pytest -m "not faults"``
leaves them out of a quick local run, CI runs them."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from guestguard.plugins import hookimpl
from guestguard.testing import free_port, migrate, wait_for
from guestguard.testing_processes import stop

pytestmark = [pytest.mark.faults, pytest.mark.one_pass("services")]

@pytest.mark.parametrize("bulk", [False, True], ids=["a-task-each", "a-batch-to-a-task"])
def test_a_worker_killed_mid_send_is_recovered_within_its_lease(fault_lab, bulk):
    """Worker A takes two messages and hangs in the provider after it accepted
    them; worker B sends the rest and leaves A's two alone while A's heartbeat
    renews their leases. A is killed with SIGKILL: B's reaper takes both back
    once the lease lapses and sends them, with the Message-ID of the first
    attempt. Nothing is lost; the two accepted-then-killed messages are the
    duplicates the outcome-unknown window allows. Queued as a bulk send's
    batch, the same: the hung send makes A give the rest of the batch back
    (after notifications.batch_patience_seconds), its other thread takes one
    of them and hangs too, and B sends the others."""
    lease = int(os.environ.get("GG_TEST_FAULT_LEASE", "2"))
    interval = int(os.environ.get("GG_TEST_FAULT_REAP_INTERVAL", "1"))
    lab = fault_lab({"jobs.lease_seconds": str(lease), "jobs.reap_interval": str(interval)})
    total = 20
    lab.queue(total, bulk=bulk)
    worker_a = lab.start(hang=True)
    wait_for(lambda: len(lab.accepted()) == 2, 60, "worker A to take two messages")
    hung = {e["recipient"] for e in lab.accepted()}
    worker_b = lab.start()
    wait_for(lambda: len(lab.accepted(worker_b.pid)) == total - 2, 60, "worker B to send the others")
    time.sleep(lease * 2 + interval)  # A is alive: its heartbeat keeps B's reaper away
    assert len(lab.accepted(worker_b.pid)) == total - 2
    killed_at = time.time()
    stop(worker_a, signal.SIGKILL, timeout=10)
    wait_for(lambda: len(lab.accepted(worker_b.pid, hung)) == 2, lease + interval + 30,
             "the interrupted messages to be sent again")
    recovered = max(e["at"] for e in lab.accepted(worker_b.pid, hung)) - killed_at
    by_recipient = lab.by_recipient()
    assert len(by_recipient) == total, "nothing lost"
    duplicated = {r: entries for r, entries in by_recipient.items() if len(entries) > 1}
    assert set(duplicated) == hung
    assert all(e["message_id"].startswith("<") for e in lab.accepted())
    for entries in duplicated.values():
        assert len({e["message_id"] for e in entries}) == 1, "a re-send keeps the first attempt's Message-ID"
    # The figure, for `pytest -s` (GG_TEST_FAULT_LEASE=30 GG_TEST_FAULT_REAP_INTERVAL=10: the defaults).
    print(f"\nrecovered {len(duplicated)} interrupted sends {recovered:.1f} s after SIGKILL "  # noqa: T201
          f"(lease {lease} s, reap interval {interval} s); {total} messages, 0 lost, "
          f"{len(duplicated)} sent twice (accepted before the kill)")
    assert recovered < lease + interval + 5


@pytest.mark.parametrize("bulk", [False, True], ids=["a-task-each", "a-batch-to-a-task"])
def test_a_fan_out_of_a_thousand_survives_a_worker_killed_three_times(fault_lab, bulk):
    """1,000 messages queued at once; the worker (4 threads) is killed with
    SIGKILL three times along the way and started again each time. Every
    recipient gets their message: once, or twice with the same Message-ID
    where a kill fell between the provider's acceptance and its record (at
    most one per thread per kill; in a batch, between the acceptance and its
    note). None is lost, and the backlog drains within seconds of the last
    restart (2 s leases, a reaper every second)."""
    total, threads, kills = 1000, 4, (200, 450, 700)
    lab = fault_lab({"jobs.lease_seconds": "2", "jobs.reap_interval": "1", "jobs.lost_after": "10"})
    recipients = lab.queue(total, bulk=bulk)
    started = time.monotonic()
    worker, killed = lab.start(threads=threads, send_seconds=0.005), set()
    for after in kills:
        wait_for(lambda after=after: len(lab.accepted()) >= after, 60, f"{after} messages sent")
        stop(worker, signal.SIGKILL, timeout=10)
        killed.add(worker.pid)
        worker = lab.start(threads=threads, send_seconds=0.005)
    wait_for(lambda: lab.statuses() == {"succeeded": total}, 60, "every message to be sent")
    drained = time.monotonic() - started
    by_recipient = lab.by_recipient()
    assert sorted(by_recipient) == recipients, "0 lost"
    duplicated = {r: entries for r, entries in by_recipient.items() if len(entries) > 1}
    for entries in duplicated.values():
        assert len({e["message_id"] for e in entries}) == 1, "a re-send keeps the first attempt's Message-ID"
        assert entries[0]["pid"] in killed, "only a kill leaves an outcome unknown"
    sends_again = sum(len(entries) - 1 for entries in duplicated.values())
    assert sends_again <= len(kills) * threads
    rows = lab.rows()
    assert {rows[r].attempts for r in duplicated} <= {2, 3, 4}, "a duplicate is a later attempt's"
    print(f"\n{total} messages, {len(kills)} kills of a {threads}-thread worker: drained in {drained:.1f} s, "  # noqa: T201
          f"0 lost, {sends_again} sent again with their first Message-ID "
          f"(at most {len(kills) * threads} allowed)")
    assert drained < 80


# --- servers of the test's own ---------------------------------------------------


def postgres_bindir() -> Path:
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise AssertionError("the fault tests need PostgreSQL's server binaries (initdb, pg_ctl)")
    return candidates[-1].parent


class OwnPostgres:
    """A throwaway cluster in a temporary directory, on a port of its own,
    trust authentication, at most ``max_connections`` connections."""

    def __init__(self, max_connections: int = 8):
        import pwd
        import tempfile

        self.bindir = postgres_bindir()
        # Not under pytest's tmp_path: the server runs as the postgres user
        # when the tests run as root, and must reach its directory.
        self.base = Path(tempfile.mkdtemp(prefix="gg-faults-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} "
                        f"-c max_connections={max_connections} -c superuser_reserved_connections=0 "
                        "-c fsync=off -c full_page_writes=off")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / program), *args], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-o", self.options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True).returncode == 0

    def remove(self) -> None:
        import shutil

        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def own_postgres():
    server = OwnPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


class Probes:
    """A JSON call and a page that both need the database (a login, and a
    page whose session cookie must be looked up); their answers checked."""

    def __init__(self, app):
        self.app = app

    def login(self):
        return self.app.post_json("/api/v1/auth/login", {"email": "nobody@example.com",
                                                         "password": "wrong password"}, status="*")

    def page(self):
        return self.app.get("/dashboard", headers={"Cookie": "gg_session=" + "c" * 43}, status="*")

    def __call__(self, expected: int) -> list[float]:
        """Both calls; how long each took."""
        times = []
        for call in (self.login, self.page):
            started = time.monotonic()
            response = call()
            times.append(time.monotonic() - started)
            if expected == 503:
                assert response.status_int == 503, response.text
                assert response.headers["Retry-After"] == "5"
            else:
                assert response.status_int in (302, 401), response.text
        return times


def every_connection_taken(server: OwnPostgres, app, probes: Probes) -> list[float]:
    """Others hold every connection the server allows: too many clients."""
    import psycopg

    app.app.registry["db.engine"].dispose()
    hogs = [psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres") for _ in range(8)]
    try:
        return probes(503)
    finally:
        for hog in hogs:
            hog.close()


def pool_exhausted(app, probes: Probes) -> list[float]:
    """The app's own pool (2 connections) is taken for longer than db.pool_timeout."""
    held = [app.app.registry["db.engine"].connect() for _ in range(2)]
    try:
        return probes(503)
    finally:
        for connection in held:
            connection.close()


def test_postgres_stopped_answers_only_503s_then_recovers(make_app, own_postgres, caplog):
    """A PostgreSQL of the test's own is stopped under the app, then started
    again; also: every connection taken (too many clients), and the pool
    exhausted. Each request answers at once with 503 and Retry-After, one
    warning per window, no traceback; the first request after the server is
    back succeeds."""
    import logging

    from prometheus_client import REGISTRY

    from guestguard.testing import signup

    def counted():
        return REGISTRY.get_sample_value("gg_database_unavailable_total", {"where": "request"}) or 0.0

    migrate(own_postgres.url)
    app = make_app({"db.url": own_postgres.url, "db.pool_size": "2", "db.max_overflow": "0",
                    "db.pool_timeout": "1", "ratelimit.enabled": "false"})
    probes = Probes(app)
    signup(app)
    probes(200)
    before = counted()
    with caplog.at_level(logging.INFO):
        own_postgres.stop()
        down = [t for _ in range(10) for t in probes(503)]
        own_postgres.start()
        back = time.monotonic()
        while probes.login().status_int == 503:  # the first request after the start should already work
            assert time.monotonic() - back < 30
        recovered = time.monotonic() - back
        probes(200)
        too_many = every_connection_taken(own_postgres, app, probes)
        probes(200)
        exhausted = pool_exhausted(app, probes)
        probes(200)
    answered_503 = len(down) + len(too_many) + len(exhausted)
    assert counted() - before == answered_503
    warnings = [r for r in caplog.records if r.name == "guestguard.outages"]
    assert 1 <= len(warnings) <= 2, "once per 30 s window (these outages fall in one or two)"
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert max(down) < 1, "a refused connection answers at once"
    assert max(exhausted) < 3, "the pool timeout (1 s) bounds the wait"
    print(f"\n{answered_503} requests answered 503 ({len(down)} while stopped, {len(too_many)} with every "  # noqa: T201
          f"connection taken, {len(exhausted)} with the pool exhausted), slowest while stopped "
          f"{max(down) * 1000:.0f} ms; first success {recovered:.2f} s after the server was back; "
          f"{len(warnings)} warning line(s)")


class SlowQuery:
    """A route whose query takes seconds on PostgreSQL."""

    @hookimpl
    def configure(self, config):
        config.add_route("slow_query", "/api/v1/test/slow-query")
        config.add_view(self.view, route_name="slow_query", renderer="json")

    @staticmethod
    def view(request):
        from sqlalchemy import text

        request.db.execute(text("SELECT pg_sleep(5)"))
        return {}


def test_a_request_in_flight_when_postgres_shuts_down_answers_503(make_app, own_postgres):
    """The server terminates the connection under a running query
    (57P01, "terminating connection due to administrator command")."""
    import threading

    migrate(own_postgres.url)
    app = make_app({"db.url": own_postgres.url}, plugins=[("slow", SlowQuery())])
    answers = []
    request = threading.Thread(target=lambda: answers.append(app.get("/api/v1/test/slow-query", status="*")))
    request.start()
    time.sleep(1)
    own_postgres.stop("fast")
    request.join(30)
    [response] = answers
    assert response.status_int == 503, response.text
    assert response.json["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "5"


class OwnRedis:
    def __init__(self):
        import tempfile

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gg-faults-redis-")
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", self.dir],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 20, "redis to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis():
    import shutil

    server = OwnRedis()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def test_redis_stopped_answers_no_5xx_and_every_domain_event_arrives_after(make_app, run_in_request, own_redis):
    """The queue (and the rate limiter) on a Redis of the test's own, which
    stops while guests answer: no 5xx; once it is back, the reaper queues the
    events whose push was lost and every one is delivered, once."""
    import datetime as dt

    import time_machine

    from guestguard.domain import DomainEventRow
    from guestguard.tasks import reap, run_task_now
    from guestguard.testing import DomainEvents, add_guest, drain, event_host, issue

    listener = DomainEvents()
    app = make_app({"huey.url": own_redis.url, "huey.immediate": "false", "huey.name": "faults-redis",
                    "ratelimit.url": own_redis.url}, plugins=[("listener", listener)])
    registry = app.app.registry
    huey = registry["huey"]
    huey.flush()
    host = event_host(app, run_in_request, {"name": "Gala", "status": "published",
                                            "starts_at": "2031-06-01T18:00:00+00:00",
                                            "ends_at": "2031-06-01T23:00:00+00:00", "timezone": "UTC"})
    tokens = [issue(app, host, add_guest(app, host, name=f"Guest {n}", email=f"g{n}@example.com"))["token"]
              for n in range(10)]
    drain(huey)
    own_redis.stop()
    statuses = [app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}, status="*").status_int
                for token in tokens]
    assert [s for s in statuses if s >= 500] == []
    pending = run_in_request(lambda request: request.db.query(DomainEventRow).filter_by(
        status="pending", name="rsvp.received").count(), registry)
    assert pending == 10, "every answer's event is a row, waiting"
    own_redis.start()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=registry.settings["jobs.lost_after"] + 1)
    with time_machine.travel(later, tick=False):  # the reaper, as a worker runs it once the queue is back
        assert run_task_now(registry, reap) >= 10
        drain(huey)
    received = listener.named("rsvp.received")
    assert len(received) == 10 and len({e.id for e in received}) == 10
    huey.flush()


class StopsPostgresAtTheSecondSend:
    """Accepts every email; in the second send it stops the test's
    PostgreSQL and has it started again two seconds later."""

    name = "stopper"
    channels = ("email",)

    def __init__(self, server: OwnPostgres):
        self.server = server
        self.sent: list[str] = []
        self.restart = None

    def send(self, message):
        import threading

        if len(self.sent) == 1:
            self.server.stop("fast")
            self.restart = threading.Timer(2, self.server.start)
            self.restart.start()
        self.sent.append(message.recipient)
        return f"stopper-{message.notification_id}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


def test_a_batch_whose_database_stops_mid_batch_sends_each_message_once_and_records_every_one(
        make_app, run_in_request, own_postgres):
    """The notes of the messages sent while PostgreSQL is away are lost; the
    batch goes on sending (the provider has its own answer) and the record at
    its end waits the outage out, so each message is sent once and ends
    recorded with its provider's id."""
    from sqlalchemy import select

    from guestguard.notifications.models import Notification
    from guestguard.notifications.services import Outgoing, queue_notifications
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    migrate(own_postgres.url)
    provider = StopsPostgresAtTheSecondSend(own_postgres)
    app = make_app({"db.url": own_postgres.url, "huey.immediate": "false",
                    "notifications.email.provider": "stopper"}, plugins=[("stopper", provider)])
    registry = app.app.registry
    recipients = [f"guest{n}@example.com" for n in range(5)]
    ids = run_in_request(lambda request: queue_notifications(request.ctx, [
        Outgoing(channel="email", recipient=to, template="test_message", context={"base_url": "https://gg.example"})
        for to in recipients]), registry)
    huey = registry["huey"]
    assert [task.name.rpartition(".")[2] for task in (huey.dequeue() for _ in range(huey.pending_count()))
            if "notification" in task.name] == ["dispatch_notifications"]
    run_task_now(registry, dispatch_notifications, ids)
    provider.restart.join()
    assert provider.sent == recipients
    rows = run_in_request(lambda request: request.db.scalars(select(Notification)).all(), registry)
    assert sorted((row.status, row.attempts, row.delivery_state, row.provider_message_id) for row in rows) == sorted(
        ("succeeded", 1, "sent", f"stopper-{notification_id}") for notification_id in ids)
    assert registry["db.engine"].pool.checkedout() == 0, "the lost note connection went back too"
