"""Events under gunicorn with PostgreSQL and Redis (part 5 of ``make bench``).

gunicorn (2 gthread workers, 8 threads each) serves the app from a temporary
ini derived from development.ini, on a free port of 127.0.0.1, against a
PostgreSQL database made for the run and Redis db 13 (both dropped or flushed
at the end). Rate limits are off: this measures the app, not the limiter.

1. 50 concurrent clients (threads, one keep-alive http.client connection
   each): GET /health (the floor), GET /access/{token} (the invitation page)
   and POST /api/v1/rsvp/{token} (an answer that records), in requests per
   second and p50/p95, each against the floor of the same run.
2. One guest-list page (limit=50), sequential, for an event of 1,000 guests
   and one of 100,000 (the issue's aim: 100k/1k <= 1.5x), and a page deep
   in the 100k list reached by following ``next`` cursors.

Skipped, with a line saying why, when PostgreSQL or Redis is unreachable.
"""
from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# A Redis database the benchmarks may flush; GG_BENCH_QUEUE_URL picks another
# (say, when several people share one Redis).
REDIS_URL = os.environ.get("GG_BENCH_QUEUE_URL", "redis://127.0.0.1:6379/13")
HOST_EMAIL = "host@bench.example"
CLIENTS = 50
PER_CLIENT = 40          # requests per client and endpoint: 2,000 in all
TIME_LIMIT = 60.0        # seconds any one concurrent run may take
LIST_REQUESTS = 200
LINKS = 300
DEEP_HOPS = 100          # next cursors followed at limit=500: 50,000 guests in
GTHREAD = ("--workers", "2", "--threads", "8", "--worker-class", "gthread")
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Ema", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
LAST = ("Okafor", "Smith", "Novak", "Tanaka", "Silva", "Brown", "Meyer", "Rossi", "Khan", "Li")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[max(0, int(len(ordered) * 0.95) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_ini(path: Path, db_url: str, extra: dict | None = None) -> None:
    """The benchmark's ini: development.ini on PostgreSQL and Redis db 13,
    rate limits off, cheap argon2id, quiet logs; ``extra`` overrides settings."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep keys as written
    parser.read(REPO / "development.ini")
    parser["app:main"].update({
        "app.env": "test", "db.url": db_url, "huey.url": REDIS_URL, "huey.in_process_worker": "false",
        "ratelimit.enabled": "false", "passwords.memory_kib": "19456",
        "billing.enforce": "false", "passwords.time_cost": "2",
        "passwords.parallelism": "1", "log.level": "WARNING", "pyramid.reload_templates": "false",
        **(extra or {}),
    })
    for section in ("logger_root", "logger_guestguard", "logger_huey", "logger_alembic"):
        parser[section]["level"] = "WARN"
    with path.open("w") as handle:
        parser.write(handle)


# --- the data ------------------------------------------------------------------


def seed(ini: Path, sizes: tuple[int, ...] = (1_000, 100_000), links: int = LINKS) -> dict:
    """One host and workspace, an event of each size in ``sizes`` (guests),
    and live links for ``links`` guests of the first. Returns what the
    clients need: the password, each event's id by size, the tokens."""
    from pyramid.paster import get_app
    from pyramid.scripting import prepare
    from sqlalchemy import insert, select

    from guestguard.db import utcnow
    from guestguard.events import invitations, services
    from guestguard.events.models import Guest
    from guestguard.events.schemas import EventFields
    from guestguard.testing import TEST_PASSWORD, create_user
    from guestguard.workspaces.services import memberships_of

    app = get_app(str(ini))
    rng = random.Random(6)
    out: dict = {"password": TEST_PASSWORD}
    try:
        with prepare(registry=app.registry) as env:
            request = env["request"]
            with request.tm:
                user = create_user(request, HOST_EMAIL, "Bench Host")
                workspace_id = memberships_of(request.db, user.id)[0].workspace_id
                starts = utcnow() + dt.timedelta(days=60)
                for size in sizes:
                    event = services.create_event(request.ctx, workspace_id, EventFields(
                        name=f"Party of {size:,}", starts_at=starts, timezone="Europe/London",
                        venue="The Hall", status="published"))
                    now = utcnow()
                    rows = [{"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event.id,
                             "name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.randrange(10**6):06d}",
                             "email": f"g{i}@bench.example", "tags": [], "created_at": now, "updated_at": now}
                            for i in range(size)]
                    for start in range(0, size, 5000):
                        request.db.execute(insert(Guest), rows[start:start + 5000])
                    out[size] = str(event.id)
                small = uuid.UUID(out[sizes[0]])
                guests = request.db.scalars(select(Guest).where(Guest.event_id == small).limit(links))
                small_event = services.find_event(request.db, small)
                out["tokens"] = [invitations.issue_link(request.ctx, guest, small_event) for guest in guests]
    finally:
        app.registry["db.engine"].dispose()
    return out


# --- the clients -----------------------------------------------------------------


class Client:
    """One keep-alive connection; returns (seconds, status, body)."""

    def __init__(self, port: int, timeout: float = 30):
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {**({"Content-Type": "application/json"} if data else {}), **(headers or {})}
        start = time.perf_counter()
        try:
            self.conn.request(method, path, data, headers)
            response = self.conn.getresponse()
            payload = response.read()
            return time.perf_counter() - start, response.status, payload
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            return time.perf_counter() - start, 0, b""

    def close(self):
        self.conn.close()


def concurrent(port: int, make_request, per_client: int = PER_CLIENT, headers: dict | None = None) -> dict:
    """CLIENTS threads, each sending per_client requests (or stopping at
    TIME_LIMIT). make_request() -> (method, path, body); ``headers`` go with
    every request."""
    samples: list[float] = []
    failures = []
    lock = threading.Lock()
    gate = threading.Barrier(CLIENTS + 1)

    def worker():
        client, mine, bad = Client(port), [], []
        gate.wait()
        deadline = time.perf_counter() + TIME_LIMIT
        for _ in range(per_client):
            if time.perf_counter() > deadline:
                break
            method, path, body = make_request()
            seconds, status, _ = client.call(method, path, body, headers)
            (mine if status == 200 else bad).append(seconds if status == 200 else status)
        client.close()
        with lock:
            samples.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    p50, p95 = percentiles(samples) if samples else (float("nan"), float("nan"))
    return {"rps": len(samples) / wall, "p50": p50, "p95": p95, "ok": len(samples), "failed": failures}


def show(name: str, result: dict, floor: dict | None = None) -> None:
    line = (f"  {name:<34} {result['rps']:7.0f} req/s   p50 {result['p50'] * 1e3:7.1f} ms"
            f"   p95 {result['p95'] * 1e3:7.1f} ms")
    if floor is not None:
        line += (f"   vs floor: req/s {result['rps'] / floor['rps']:.2f}x, "
                 f"p50 {result['p50'] / floor['p50']:.1f}x, p95 {result['p95'] / floor['p95']:.1f}x")
    if result["failed"]:
        line += f"   ({len(result['failed'])} failed: statuses {sorted(set(result['failed']))})"
    print(line)


def sequential(client: Client, path: str, headers: dict, count: int = LIST_REQUESTS) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        seconds, status, _ = client.call("GET", path, headers=headers)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        samples.append(seconds)
    return percentiles(samples)


def bearer(client: Client, data: dict) -> dict:
    """The host's Authorization header, from logging in through the API."""
    _, status, body = client.call("POST", "/api/v1/auth/login", {"email": HOST_EMAIL, "password": data["password"]})
    if status != 200:
        raise RuntimeError(f"login answered {status}: {body[:200]!r}")
    return {"Authorization": f"Bearer {json.loads(body)['access_token']}"}


def measure(port: int, data: dict) -> None:
    tokens = data["tokens"]
    counter = itertools.count()

    def health():
        return "GET", "/health", None

    def page():
        return "GET", f"/access/{tokens[next(counter) % len(tokens)]}", None

    def answer():
        k = next(counter)  # each pass over the tokens flips the answer, so every one records
        return ("POST", f"/api/v1/rsvp/{tokens[k % len(tokens)]}",
                {"response": ("yes", "maybe")[(k // len(tokens)) % 2], "plus_ones": 0})

    for make in (health, page):  # warm-up: connections, pools, templates
        concurrent(port, make, per_client=4)
    print(f"  {CLIENTS} concurrent clients, {PER_CLIENT} requests each:")
    floor = concurrent(port, health)
    show("GET /health (floor)", floor)
    show("GET /access/{token}", concurrent(port, page), floor)
    counter = itertools.count()
    show("POST /api/v1/rsvp/{token}", concurrent(port, answer), floor)

    client = Client(port)
    try:
        auth = bearer(client, data)
        small, large = (f"/api/v1/events/{data[size]}/guests?limit=50" for size in (1_000, 100_000))
        for path in (small, large):
            sequential(client, path, auth, 20)  # warm-up
        print(f"  one guest-list page (limit=50), {LIST_REQUESTS} sequential requests:")
        p_small, p_large = sequential(client, small, auth), sequential(client, large, auth)
        cursor = None
        for _ in range(DEEP_HOPS):
            path = f"/api/v1/events/{data[100_000]}/guests?limit=500" + (f"&after={cursor}" if cursor else "")
            _, _, body = client.call("GET", path, headers=auth)
            cursor = json.loads(body)["next"]
        p_deep = sequential(client, f"{large}&after={cursor}", auth)
    finally:
        client.close()
    for name, (p50, p95) in (("1,000 guests, first page", p_small), ("100,000 guests, first page", p_large),
                             (f"100,000 guests, after {DEEP_HOPS * 500:,}", p_deep)):
        print(f"  {name:<34} p50 {p50 * 1e3:7.2f} ms   p95 {p95 * 1e3:7.2f} ms")
    print(f"  ratio 100k/1k: p50 {p_large[0] / p_small[0]:.2f}x, p95 {p_large[1] / p_small[1]:.2f}x;"
          f" deep/1k: p50 {p_deep[0] / p_small[0]:.2f}x, p95 {p_deep[1] / p_small[1]:.2f}x (aim <= 1.5x)")


# --- the run -----------------------------------------------------------------------


def reachable(db_url: str):
    """The reason PostgreSQL or Redis cannot be used, or None."""
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{db_url}/postgres")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"no PostgreSQL at {db_url} ({type(exc).__name__})"
    finally:
        engine.dispose()
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({type(exc).__name__})"
    return None


def admin(sql: str, database: str = "postgres"):
    """Run one statement outside a transaction; its first value, if it returns rows."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{PG_SERVER}/{database}", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            result = connection.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def wait_until_up(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 90  # a busy machine boots slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within 90 s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 30 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def spawn(command: list[str], log: Path) -> subprocess.Popen:
    """A process of the venv (``command[0]`` names its script) run from the
    repository, its output appended to ``log``."""
    with log.open("a") as sink:
        return subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:]], cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def gunicorn(ini: Path, log: Path, options: tuple[str, ...] = GTHREAD):
    """gunicorn serving ``ini`` on a free port of 127.0.0.1, answering
    /health; yields (process, port) and stops it on the way out."""
    port = free_port()
    process = spawn(["gunicorn", "--paste", str(ini), "--bind", f"127.0.0.1:{port}", *options], log)
    try:
        wait_until_up(process, port, log)
        yield process, port
    finally:
        stop(process)


@contextlib.contextmanager
def bench_database():
    """A PostgreSQL database made and migrated for the run, with Redis db 13
    flushed; dropped and flushed on the way out. Yields (name, url)."""
    import redis

    from guestguard.testing import migrate

    name = f"guestguard_bench_{os.getpid()}"
    queue = redis.Redis.from_url(REDIS_URL)
    try:
        queue.flushdb()
        admin(f"CREATE DATABASE {name}")
        db_url = f"{PG_SERVER}/{name}"
        migrate(db_url)
        yield name, db_url
    finally:
        try:
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            queue.flushdb()
            queue.close()


def main() -> None:
    print("events under gunicorn (2 gthread workers x 8 threads), PostgreSQL, Redis")
    problem = reachable(PG_SERVER)
    if problem:
        print(f"  skipped: {problem}")
        return
    with tempfile.TemporaryDirectory() as tmp, bench_database() as (name, db_url):
        ini, log = Path(tmp) / "bench.ini", Path(tmp) / "gunicorn.log"
        write_ini(ini, db_url)
        start = time.perf_counter()
        data = seed(ini)
        admin("ANALYZE", name)  # as autovacuum would after a bulk load
        print(f"  seeded 101,000 guests and {len(data['tokens'])} links in {time.perf_counter() - start:.1f} s")
        with gunicorn(ini, log) as (_, port):
            measure(port, data)
