"""Several nodes: two web processes (gunicorn, gunicorn.conf.py) and two task
workers on one PostgreSQL, reached through PgBouncer in transaction pooling
mode, and one Redis. A host's live stream on one web process hears a guest
answer on the other; a login made on one works, and ends, on the other; a
rate limit counts the requests of both; a burst of durable jobs, each queued
twice, is sent once; a periodic task runs once per tick though both workers
queue it; with PgBouncer killed both web processes answer 503, and serve
again once it is back. The figures print with ``pytest -s``.

PostgreSQL and Redis only (the services pass); PgBouncer is Debian's
(``make pgbouncer-deps``)."""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import subprocess
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from bs4 import BeautifulSoup
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.engine import make_url

from guestguard.notifications.models import Notification
from guestguard.tasks import enqueue_job
from guestguard.testing import (
    DATABASE_ENV,
    REDIS_ENV,
    TEST_PASSWORD,
    create_team,
    free_port,
    in_request,
    session_bearer,
    wait_for,
)
from guestguard.testing_processes import (
    PGBOUNCER,
    EventStream,
    get,
    kill,
    killed_at_exit,
    paste_ini,
    read_log,
    start_gunicorn,
    start_pgbouncer,
)

# Real processes and a pooler killed on purpose, on the production backends only (docs/testing.md).
pytestmark = [pytest.mark.faults, pytest.mark.one_pass("services")]

TOKEN = "scrape-" + "n" * 30
EVENT = {"name": "Gala", "status": "published", "starts_at": "2031-06-01T18:00:00+00:00",
         "ends_at": "2031-06-01T23:00:00+00:00", "timezone": "UTC"}
TICKETS_PER_HOUR = 5
BURST = 200


class Browser:
    """One browser's cookies, sent to whichever web process it calls."""

    def __init__(self):
        self.cookies: dict[str, str] = {}
        self.location = ""  # of the last answer

    def call(self, port: int, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"Connection": "close"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            self.location = response.getheader("Location", "")
            for header in response.msg.get_all("Set-Cookie") or ():
                for name, morsel in SimpleCookie(header).items():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, response.read().decode()
        finally:
            connection.close()

    @staticmethod
    def csrf(page: str) -> str:
        return BeautifulSoup(page, "html.parser").find("input", {"name": "csrf_token"})["value"]


def call_json(port: int, path: str, body: dict | None, headers: dict[str, str] | None = None
              ) -> tuple[int, dict]:
    """POST ``body`` as JSON (GET when it is None): the status and the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET" if body is None else "POST", path, body=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json", "Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def worker_samples(port: int) -> dict[tuple[str, tuple], float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def skipped(ports: list[int], task: str) -> float:
    key = ("gg_task_runs_total", (("outcome", "skipped"), ("task", task)))
    return sum(worker_samples(port).get(key, 0.0) for port in ports)


def early_in_a_minute() -> None:
    """Return within the first 35 s of a minute: both workers, started now,
    most likely queue their first periodic tasks in the same minute."""
    second = dt.datetime.now(dt.UTC).second
    if second > 35:
        time.sleep(60.5 - second)


class Cluster:
    """The two web processes (``a``, ``b``) and the two workers of ``lab``
    (a FaultLab whose database URL goes through PgBouncer), and a host's
    event with one guest."""

    def __init__(self, lab, running: contextlib.ExitStack, tmp_path):
        self.lab = lab
        early_in_a_minute()
        started = time.monotonic()
        self.metrics_ports = [free_port(), free_port()]
        self.workers = [lab.start(periodic=True, ready=False,
                                  settings={"metrics.worker_listen": f"127.0.0.1:{port}"})
                        for port in self.metrics_ports]
        ini = paste_ini(tmp_path / "web.ini", {**lab.settings, "notifications.email.provider": "console"})
        self.web = []
        for index in range(2):
            port = free_port()
            running.enter_context(killed_at_exit(
                start_gunicorn(ini, port, tmp_path / f"web-{index}.err", WEB_CONCURRENCY="1")))
            self.web.append(port)
        self.a, self.b = self.web
        wait_for(lambda: all(lab.ready(worker) for worker in self.workers), 60, "both workers to start")
        assert self.alive(), [lab.errors(worker) for worker in self.workers]
        self.startup = time.monotonic() - started
        # The world, made by a third process, through PgBouncer too.
        workspace_id = in_request(lab.registry, create_team)
        self.ada = session_bearer(lab.registry, "ada@example.com")
        self.event = lab.app.post_json("/api/v1/events", {"workspace_id": workspace_id, **EVENT},
                                       headers=self.ada).json["event"]
        guests = f"/api/v1/events/{self.event['id']}/guests"
        guest = lab.app.post_json(guests, {"name": "Grace", "email": "grace@example.com"}, headers=self.ada,
                                  status=201).json["guest"]
        self.token = lab.app.post_json(f"{guests}/{guest['id']}/tokens", {}, headers=self.ada,
                                       status=201).json["token"]

    def alive(self) -> bool:
        return all(get(port, "/health")[0] == 200 for port in self.web) and all(
            worker.poll() is None for worker in self.workers)

    def ticket(self, port: int) -> tuple[int, dict]:
        return call_json(port, "/api/v1/auth/stream-ticket", {"event_id": self.event["id"]}, self.ada)

    def answer_reaches_the_other_stream(self) -> float:
        """A host's stream on A hears the guest's answer posted to B: how soon."""
        status, ticket = self.ticket(self.a)
        assert status == 201, ticket
        stream = EventStream(self.a, ticket["stream_url"])
        try:
            stream.read_until(b": connected")
            answered = time.monotonic()
            status, body = call_json(self.b, f"/api/v1/rsvp/{self.token}", {"response": "yes", "plus_ones": 0})
            assert status == 200, body
            activity = json.loads(stream.read_until(b"data: {")[len(b"data: "):])
            heard = time.monotonic() - answered
        finally:
            stream.connection.close()
        assert activity["kind"] == "rsvp.received" and activity["summary"] == "Grace answered yes"
        return heard

    def login_travels(self) -> None:
        """A login made on B (with the form A served) works on A, and ends
        there when signed out on B."""
        browser = Browser()
        status, page = browser.call(self.a, "GET", "/login")
        assert status == 200
        status, _ = browser.call(self.b, "POST", "/login", {
            "csrf_token": browser.csrf(page), "email": "ada@example.com", "password": TEST_PASSWORD})
        assert status == 303 and "gg_session" in browser.cookies
        status, account = browser.call(self.a, "GET", "/account")
        assert status == 200 and "ada@example.com" in account
        status, _ = browser.call(self.b, "POST", "/logout", {"csrf_token": browser.csrf(account)})
        assert status == 303
        status, _ = browser.call(self.a, "GET", "/account")
        assert status == 302 and "/login" in browser.location, "signed out on B, the login no longer works on A"

    def burst_is_sent_once(self) -> tuple[float, list[int]]:
        """A burst of durable jobs, each queued twice (the fan-out's batches,
        then one by one), is sent once: how long it took, and how many each
        worker sent."""
        lab = self.lab
        started = time.monotonic()
        recipients = lab.queue(BURST, prefix="burst")
        in_request(lab.registry, lambda request: [
            enqueue_job(request, row)
            for row in request.db.scalars(select(Notification).where(Notification.recipient.in_(recipients)))])
        wait_for(lambda: len(lab.accepted(recipients=recipients)) >= BURST and lab.statuses()["succeeded"] >= BURST,
                 60, "the burst to be sent")
        drained = time.monotonic() - started
        wanted = set(recipients)
        deliveries = {who: sent for who, sent in lab.by_recipient().items() if who in wanted}
        assert sorted(deliveries) == sorted(recipients)
        assert all(len(sent) == 1 for sent in deliveries.values()), \
            {who: len(sent) for who, sent in deliveries.items() if len(sent) > 1}
        rows = lab.rows()
        assert {rows[who].attempts for who in recipients} == {1}
        return drained, sorted(len(lab.accepted(pid=worker.pid, recipients=recipients)) for worker in self.workers)

    def outlives_the_pooler(self, db_url: str, bouncer, tmp_path) -> tuple[subprocess.Popen, float]:
        """With PgBouncer gone, both web processes answer 503 (unavailable);
        started again on its port, they serve again: the new PgBouncer, and
        how soon they served after it started."""
        kill(bouncer)
        event = f"/api/v1/events/{self.event['id']}"
        for port in self.web:
            status, body = call_json(port, event, None, self.ada)
            assert status == 503 and body["error"]["code"] == "unavailable", body
        listen = make_url(self.lab.settings["db.url"]).port
        again, _ = start_pgbouncer(db_url, tmp_path, listen=listen)
        restarted = time.monotonic()
        wait_for(lambda: all(call_json(port, event, None, self.ada)[0] == 200 for port in self.web), 20,
                 "both web processes to serve again through the new PgBouncer")
        return again, time.monotonic() - restarted

    def periodic_runs_once_per_tick(self) -> int:
        """Both workers queued the periodic task for each tick; it ran once
        per tick and the other copy stood down: how many ticks."""

        def ran() -> list[dict]:
            return [entry for entry in read_log(self.lab.log) if entry["what"] == "periodic"]

        # Within seconds, unless a worker was so slow to start that the two
        # first ticks fell in different minutes: then the next one is shared.
        wait_for(lambda: ran() and len(ran()) == skipped(self.metrics_ports, "__main__.every_minute"), 70,
                 "each tick's second copy of the periodic task to stand down")
        runs = ran()
        assert len({int(entry["at"] // 60) for entry in runs}) == len(runs), "a tick ran twice"
        return len(runs)


def test_two_web_processes_and_two_workers_share_postgres_through_pgbouncer_and_redis(
        db_url, redis_url, fault_lab, tmp_path):
    if not (db_url.startswith("postgresql") and redis_url):
        pytest.skip(f"needs PostgreSQL and Redis ({DATABASE_ENV}, {REDIS_ENV})")
    assert PGBOUNCER.exists(), "PgBouncer is not installed: make pgbouncer-deps"
    started = time.monotonic()
    with contextlib.ExitStack() as running:
        bouncer, through_bouncer = start_pgbouncer(db_url, tmp_path)
        running.enter_context(killed_at_exit(bouncer))
        lab = fault_lab({"db.url": through_bouncer, "db.prepare_threshold": "never",
                         "guard.stream.url": redis_url, "ratelimit.url": redis_url,
                         "ratelimit.stream_ticket": f"{TICKETS_PER_HOUR}/hour", "metrics.token": TOKEN})
        cluster = Cluster(lab, running, tmp_path)
        heard = cluster.answer_reaches_the_other_stream()
        cluster.login_travels()
        # The ticket limit counts both: one taken above, then B, A, B, A; then refused on either.
        statuses = [cluster.ticket(port)[0] for port in (cluster.b, cluster.a) * 3]
        assert statuses == [201] * (TICKETS_PER_HOUR - 1) + [429, 429]
        drained, by_worker = cluster.burst_is_sent_once()
        ticks = cluster.periodic_runs_once_per_tick()
        again, recovered = cluster.outlives_the_pooler(db_url, bouncer, tmp_path)
        running.enter_context(killed_at_exit(again))
        assert cluster.alive()
    elapsed = time.monotonic() - started
    print(f"\nthrough PgBouncer (transaction pooling, 4 server connections), 2 gunicorn + 2 workers serving "  # noqa: T201
          f"{cluster.startup:.1f} s after they were started; an answer on B reached the stream on A in "
          f"{heard * 1000:.0f} ms; login on B, used on A, ended on B; tickets {statuses}; {BURST} jobs queued "
          f"twice each sent once in {drained:.1f} s (by worker: {by_worker}); periodic task: {ticks} tick(s), "
          f"each run once and stood down once; PgBouncer killed: 503s, serving again "
          f"{recovered:.1f} s after it restarted; {elapsed:.1f} s in all")
