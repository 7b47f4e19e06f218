"""The guest's hot path against its floor, under wrk (part 7 of ``make bench``).

Two gunicorns, started the same way (``-c gunicorn.conf.py``: 2 gthread
workers x 8 threads, ``max_requests`` off so no worker restarts during a
run), serve the same freshly migrated PostgreSQL database: GuestGuard from
an ini derived from production.ini (Redis db 13 for the queue, limits and
live activity; the guard on; rate limits off; console email), and the floor
(``benchmarks/floor.py``: Pyramid + SQLAlchemy Core + psycopg 3 + Jinja2
doing the same essential SQL). wrk, a separate process, drives each in turn
(five alternating turns of two seconds each, ``GG_BENCH_TURNS``, so that
both see the same minutes of a machine whose speed swings) with a Lua
script rotating over many distinct links (a fixed few would trip the
guard's burst rule), at 16 and 64 connections:

- the invitation page, ``GET /access/{token}``, every guest having opened
  it before (a repeat view);
- an answer, ``POST /api/v1/rsvp/{token}``, yes and maybe alternating per
  link, so each records;
- a host's guest-list page, ``GET /api/v1/events/{id}/guests?limit=50``.

Then the mixed load (70% views, 20% answers, 10% guest-list pages, each
user waiting 0.5-1.5 s between requests) at 175, 500 and 1,000 users,
the floor and GuestGuard in turn at each count: the floor's figures say
what these cores give for the same essential work.

Beside each rate: the web workers' CPU per request (utime + stime from
/proc) and the PostgreSQL backends' of that server's pool; the workers'
resident memory after the runs; SQL statements per request, counted on the
engine of an in-process app on the same database. The ratio, GuestGuard over
the floor, is the figure: both run in the same minute on the same machine.

GuestGuard's code is whatever ``guestguard`` imports as (PYTHONPATH chooses;
the spawned servers inherit it), so the same benchmark measures the code
before a change too. ``GG_BENCH_HOTPATH=rsvp`` (or ``view``, ``guests``,
comma-separated) runs only those requests' runs; ``GG_BENCH_MIXED=0`` skips
the mixed load; ``GG_BENCH_APP_ROLE=1`` has GuestGuard connect as the
application role, row-level security applied, as deployed (by default it
connects as the tables' owner, a superuser the policies let through, as
every figure recorded before this option did). Skipped, saying why, without
PostgreSQL, Redis or wrk.
"""
from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.events import REDIS_URL, admin, bench_database, free_port, reachable, stop, wait_until_up

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
LINKS = 20_000
# Answers already in the database, of an earlier event: the answers table is
# shared by every event of every workspace and is never empty in service.
# Analyzed empty, PostgreSQL plans its look-ups as scans of a page or two,
# and a prepared statement keeps that plan while the runs add thousands of
# rows (benchmarks/README.md, "An answer's PostgreSQL CPU").
EARLIER_ANSWERS = 20_000
DURATION = 10           # seconds of wrk for each server, request and concurrency
# ... in this many turns, the floor's and GuestGuard's alternating: on a
# shared machine whose speed swings from minute to minute, both servers then
# see the same minutes (GG_BENCH_TURNS).
TURNS = int(os.environ.get("GG_BENCH_TURNS", "5"))
WARM_UP = 3
CONNECTIONS = (16, 64)
WRK_THREADS = 2
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")
TICKS = os.sysconf("SC_CLK_TCK")
IN_PROCESS = {"app.env": "test", "ratelimit.enabled": "false", "passwords.memory_kib": "19456",
              "billing.enforce": "false", "passwords.time_cost": "2", "passwords.parallelism": "1"}

# Each wrk thread takes the links i with i % threads == its number, so an
# answer's link belongs to one thread, which alternates its answers.
# What both scripts start with: each thread numbered, and its share of the
# links (``args``: the links' file, the number of threads) read at init.
LUA_PRELUDE = r"""
local tokens, mine, answers, counter = {}, {}, {}, 0
local auth, event_id = "%(auth)s", "%(event_id)s"
local threads_made = 0

function setup(thread)
  thread:set("number", threads_made)
  threads_made = threads_made + 1
end

local function take_my_links(args)
  local threads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i %% threads == number then mine[#mine + 1] = line end
    i = i + 1
  end
  wrk.headers["User-Agent"] = "%(agent)s"
end

-- An answer that records: each link alternates between yes and maybe.
local function answer(index, token)
  answers[index] = (answers[index] or 0) + 1
  local response = (answers[index] %% 2 == 1) and "yes" or "maybe"
  return wrk.format("POST", "/api/v1/rsvp/" .. token, {["Content-Type"] = "application/json"},
                    '{"response": "' .. response .. '", "plus_ones": 0}')
end
"""

LUA = LUA_PRELUDE + r"""
local kind = "%(kind)s"

function init(args)
  take_my_links(args)
  if auth ~= "" then wrk.headers["Authorization"] = auth end
end

function request()
  counter = counter + 1
  if kind == "guests" then
    return wrk.format("GET", "/api/v1/events/" .. event_id .. "/guests?limit=50")
  end
  local index = (counter %% #mine) + 1
  local token = mine[index]
  if kind == "view" then
    return wrk.format("GET", "/access/" .. token)
  end
  return answer(index, token)
end
"""


# The mixed load: each connection is a user who waits about a second
# (0.5 to 1.5 s) between requests; 7 in 10 requests view an invitation, 2
# answer, 1 is a host's guest-list page. wrk's own report has no p95: the
# script prints the percentiles itself.
MIXED_USERS = (175, 500, 1000)
MIXED_SECONDS = 20
MIXED_LUA = LUA_PRELUDE + r"""
function init(args)
  take_my_links(args)
  math.randomseed(number + 7)
end

function delay()
  return math.random(500, 1500)
end

function request()
  counter = counter + 1
  local pick = math.random(10)
  if pick == 10 then
    return wrk.format("GET", "/api/v1/events/" .. event_id .. "/guests?limit=50", {["Authorization"] = auth})
  end
  local index = math.random(#mine)
  local token = mine[index]
  if pick <= 7 then
    return wrk.format("GET", "/access/" .. token)
  end
  return answer(index, token)
end

function done(summary, latency, requests)
  io.write(string.format("MIXED p50 %%.1f p95 %%.1f p99 %%.1f\n", latency:percentile(50) / 1000,
                         latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def guestguard_ini(path: Path, db_url: str) -> None:
    """production.ini on the bench database and Redis db 13; rate limits
    off, no CAPTCHA; the rest as shipped (nothing measured sends email)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "production.ini")
    parser["app:main"].update({
        "db.url": db_url, "redis.url": REDIS_URL, "huey.url": REDIS_URL, "guard.stream.url": REDIS_URL,
        "ratelimit.url": REDIS_URL, "ratelimit.enabled": "false",
        "captcha.verifier": "disabled", "passwords.memory_kib": "19456",
        "billing.enforce": "false", "passwords.time_cost": "2",
        "passwords.parallelism": "1",
    })
    with path.open("w") as handle:
        parser.write(handle)


def seed(db_url: str, links: int = LINKS) -> dict:
    """A host (password ``TEST_PASSWORD``), a published event of ``links``
    guests, each with a live link and the invitation opened already, and an
    earlier event whose ``EARLIER_ANSWERS`` guests have each answered once;
    the raw tokens."""
    from pyramid.scripting import prepare
    from sqlalchemy import create_engine, insert

    from guestguard import make_config
    from guestguard.accounts.tokens import new_token
    from guestguard.db import utcnow
    from guestguard.events.models import Event, Guest, InvitationLink, Rsvp
    from guestguard.testing import TEST_PASSWORD, create_user
    from guestguard.workspaces.services import memberships_of

    from benchmarks.events import HOST_EMAIL

    app = make_config({**IN_PROCESS, "db.url": db_url, "huey.url": "memory://",
                       "huey.immediate": "true"}).make_wsgi_app()
    with prepare(registry=app.registry) as env:
        request = env["request"]
        with request.tm:
            user = create_user(request, HOST_EMAIL, "Bench Host")
            workspace_id = memberships_of(request.db, user.id)[0].workspace_id
    app.registry["db.engine"].dispose()
    engine = create_engine(db_url)
    now = utcnow()
    event_id = uuid.uuid4()
    tokens = []
    with engine.begin() as connection:
        connection.execute(insert(Event), [{
            "id": event_id, "workspace_id": workspace_id, "name": "The Summer Party", "venue": "The Hall",
            "description": "Food, music and friends.", "host_message": "Do come!", "timezone": "Europe/London",
            "starts_at": now + dt.timedelta(days=60), "status": "published", "default_plus_ones": 0,
            "created_at": now, "updated_at": now}])
        guests, rows = [], []
        for i in range(links):
            guest_id = uuid.uuid4()
            raw, token_hash = new_token()
            tokens.append(raw)
            guests.append({"id": guest_id, "workspace_id": workspace_id, "event_id": event_id,
                           "name": f"Guest {i:06d}", "email": f"g{i}@bench.example", "tags": [],
                           "invited_at": now, "opened_at": now, "created_at": now, "updated_at": now})
            rows.append({"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event_id,
                         "guest_id": guest_id, "token_hash": token_hash, "created_at": now})
        for start in range(0, links, 5000):
            connection.execute(insert(Guest), guests[start:start + 5000])
            connection.execute(insert(InvitationLink), rows[start:start + 5000])
        earlier_id, then = uuid.uuid4(), now - dt.timedelta(days=300)
        connection.execute(insert(Event), [{
            "id": earlier_id, "workspace_id": workspace_id, "name": "Last Year's Party", "venue": "The Hall",
            "description": "", "host_message": "", "timezone": "Europe/London", "starts_at": then,
            "status": "published", "default_plus_ones": 0, "created_at": then, "updated_at": then}])
        for start in range(0, EARLIER_ANSWERS, 5000):
            earlier, answers = [], []
            for i in range(start, min(start + 5000, EARLIER_ANSWERS)):
                guest_id, response = uuid.uuid4(), ("yes", "no", "maybe")[i % 3]
                earlier.append({"id": guest_id, "workspace_id": workspace_id, "event_id": earlier_id,
                                "name": f"Earlier Guest {i:06d}", "email": f"e{i}@bench.example", "tags": [],
                                "response": response, "invited_at": then, "opened_at": then, "responded_at": then,
                                "created_at": then, "updated_at": then})
                answers.append({"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": earlier_id,
                                "guest_id": guest_id, "link_id": None, "response": response, "plus_ones": 0,
                                "dietary": "", "message": "", "plus_one_names": [], "answers": {},
                                "created_at": then})
            connection.execute(insert(Guest), earlier)
            connection.execute(insert(Rsvp), answers)
    engine.dispose()
    return {"password": TEST_PASSWORD, "event_id": str(event_id), "tokens": tokens}


# --- what the server processes use ------------------------------------------------


def workers_of(master: int) -> list[int]:
    try:
        return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def backends(database: str, application: str) -> list[int]:
    """The PostgreSQL backends serving one server's pool."""
    found = admin(f"SELECT string_agg(pid::text, ' ') FROM pg_stat_activity "
                  f"WHERE datname = '{database}' AND application_name = '{application}'")
    return [int(pid) for pid in (found or "").split()]


# --- the load -----------------------------------------------------------------------


def wrk(port: int, script: Path, tokens: Path, connections: int, seconds: int) -> dict:
    out = wrk_output(port, script, tokens, connections, seconds)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def latency(mark: str) -> float:
        value, unit = re.search(rf"\s{mark}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": requests,
              "bad": int(bad.group(1)) if bad else 0,
              "socket_errors": sum(map(int, errors.groups())) if errors else 0,
              "p50": latency("50"), "p99": latency("99")}
    mixed = re.search(r"MIXED p50 ([\d.]+) p95 ([\d.]+) p99 ([\d.]+)", out)
    if mixed:
        result.update(zip(("p50", "p95", "p99"), map(float, mixed.groups()), strict=True))
    return result


def wrk_output(port: int, script: Path, tokens: Path, connections: int, seconds: int) -> str:
    return subprocess.run(
        [shutil.which("wrk") or "wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}", "--", str(tokens), str(WRK_THREADS)],
        capture_output=True, text=True, check=True).stdout


def side_by_side(floor: dict, ours: dict, script: Path, tokens: Path, connections: int) -> tuple[dict, dict]:
    """The floor and GuestGuard measured in ``TURNS`` alternating turns of
    ``DURATION / TURNS`` seconds each, each server's turns added up."""
    turns: tuple[list, list] = ([], [])
    for _ in range(TURNS):
        for server, kept in zip((floor, ours), turns, strict=True):
            kept.append(measured(server, script, tokens, connections, max(1, round(DURATION / TURNS))))
    return combined(turns[0]), combined(turns[1])


def combined(turns: list[dict]) -> dict:
    """One server's turns as one run: requests a second over their time,
    CPU a request over all its requests, errors added up, the median
    latency the median turn's and the 99th percentile the worst turn's."""
    requests = sum(turn["requests"] for turn in turns)
    seconds = sum(turn["requests"] / turn["rps"] for turn in turns if turn["rps"])
    middle = sorted(turns, key=lambda turn: turn["p50"])[len(turns) // 2]
    return {"rps": requests / seconds if seconds else 0.0, "requests": requests,
            "bad": sum(turn["bad"] for turn in turns), "socket_errors": sum(turn["socket_errors"] for turn in turns),
            "p50": middle["p50"], "p99": max(turn["p99"] for turn in turns),
            "cpu_ms": sum(turn["cpu_ms"] * turn["requests"] for turn in turns) / max(requests, 1),
            "pg_ms": sum(turn["pg_ms"] * turn["requests"] for turn in turns) / max(requests, 1)}


def measured(server: dict, script: Path, tokens: Path, connections: int, seconds: int = DURATION) -> dict:
    """One wrk run, with the CPU the server's workers and PostgreSQL
    backends used meanwhile."""
    pids, pg = workers_of(server["process"].pid), backends(server["database"], server["name"])
    before, pg_before = cpu_seconds(pids), cpu_seconds(pg)
    result = wrk(server["port"], script, tokens, connections, seconds)
    done = max(result["requests"], 1)
    result["cpu_ms"] = (cpu_seconds(pids) - before) * 1e3 / done
    result["pg_ms"] = (cpu_seconds(pg) - pg_before) * 1e3 / done
    return result


@contextlib.contextmanager
def served(name: str, target: list[str], env: dict, log: Path, database: str):
    port = free_port()
    environ = {**os.environ, **env, "GUNICORN_MAX_REQUESTS": "0", "PGAPPNAME": name}
    with log.open("a") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py"), *target,
             "--bind", f"127.0.0.1:{port}"], cwd=REPO, env=environ, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until_up(process, port, log)
        yield {"name": name, "port": port, "process": process, "database": database}
    finally:
        stop(process)


def login(port: int, password: str) -> str:
    import json

    from benchmarks.events import HOST_EMAIL, Client

    client = Client(port)
    try:
        _, status, body = client.call("POST", "/api/v1/auth/login", {"email": HOST_EMAIL, "password": password})
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"login answered {status}: {body[:200]!r}")
    return f"Bearer {json.loads(body)['access_token']}"


# --- statements per request -------------------------------------------------------


def statements_per_request(db_url: str, data: dict) -> dict[str, str]:
    """SQL statements (and pool pings, named apart) per request, counted on the engine of
    an in-process app of the code under test, on the bench database."""
    import webtest
    from sqlalchemy import event

    from guestguard import make_config

    app = make_config({**IN_PROCESS, "db.url": db_url, "huey.url": REDIS_URL}).make_wsgi_app()
    engine = app.registry["db.engine"]
    seen: list[str] = []
    ping = engine.dialect.do_ping

    def counted_ping(connection):
        seen.append("ping")
        return ping(connection)

    engine.dialect.do_ping = counted_ping
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append("statement"))
    client = webtest.TestApp(app, extra_environ={"HTTP_USER_AGENT": BROWSER, "HTTP_HOST": "localhost"})
    auth = {"Authorization": login_in_process(client, data["password"])}
    token, first = data["tokens"][-1], data["tokens"][-2]
    calls = {
        "repeat view": lambda: client.get(f"/access/{token}"),
        "first open": lambda: client.get(f"/access/{first}"),
        "answer that records": lambda: client.post_json(f"/api/v1/rsvp/{token}", {"response": "no"}),
        "guest-list page": lambda: client.get(f"/api/v1/events/{data['event_id']}/guests?limit=50", headers=auth),
    }
    admin(f"UPDATE guests SET opened_at = NULL WHERE id = (SELECT guest_id FROM invitation_links "
          f"WHERE token_hash = encode(sha256('{first}'::bytea), 'hex'))", db_url.rsplit("/", 1)[1])
    counts = {}
    client.get(f"/access/{token}")  # the pool's first connection
    for name, call in calls.items():
        seen.clear()
        call()
        pings = seen.count("ping")
        counts[name] = f"{len(seen) - pings}" + (f" (+{pings} pool ping)" if pings else "")
    engine.dispose()
    return counts


def login_in_process(client, password: str) -> str:
    from benchmarks.events import HOST_EMAIL

    answer = client.post_json("/api/v1/auth/login", {"email": HOST_EMAIL, "password": password})
    return f"Bearer {answer.json['access_token']}"


# --- the run ----------------------------------------------------------------------


def report(results: dict, rss: dict) -> None:
    print(f"  {'':<30} {'conns':>5} {'floor req/s':>11} {'GG req/s':>9} {'ratio':>6}"
          f" {'GG p50/p99 ms':>14} {'floor p50/p99 ms':>16} {'CPU ms/req GG+PG vs floor':>26}")
    for (what, connections), (floor, ours) in results.items():
        trouble = ""
        if ours["bad"] or ours["socket_errors"] or floor["bad"] or floor["socket_errors"]:
            trouble = (f"  (non-2xx GG {ours['bad']}, floor {floor['bad']}; socket errors GG "
                       f"{ours['socket_errors']}, floor {floor['socket_errors']})")
        print(f"  {what:<30} {connections:>5} {floor['rps']:>11.0f} {ours['rps']:>9.0f}"
              f" {ours['rps'] / floor['rps']:>5.2f}x {ours['p50']:>6.1f}/{ours['p99']:<7.1f}"
              f" {floor['p50']:>7.1f}/{floor['p99']:<8.1f}"
              f" {ours['cpu_ms']:>5.2f}+{ours['pg_ms']:.2f} vs {floor['cpu_ms']:.2f}+{floor['pg_ms']:.2f}{trouble}")
    print("  RSS per web worker after the runs (MiB): " +
          "; ".join(f"{name} {', '.join(f'{value:.0f}' for value in values)}" for name, values in rss.items()),
          flush=True)


@contextlib.contextmanager
def guestguard_url(db_url: str, database: str):
    """The URL GuestGuard's servers use: the tables' owner, a superuser that
    row-level security lets through (the figures recorded before); with
    ``GG_BENCH_APP_ROLE=1`` the application role, as deployed, every policy
    applied. The floor uses the owner's either way."""
    if os.environ.get("GG_BENCH_APP_ROLE") != "1":
        yield db_url
        return
    from guestguard.testing import app_role_url

    url = app_role_url(db_url)
    try:
        yield url
    finally:
        admin(f"DROP OWNED BY {database}_app", database)
        admin(f"DROP ROLE IF EXISTS {database}_app")


def main() -> None:
    print("the guest's hot path against its floor, under wrk (gunicorn 2 gthread x 8, PostgreSQL, Redis)")
    problem = reachable(PG_SERVER) or (None if shutil.which("wrk") else "no wrk (apt-get install wrk)")
    if problem:
        print(f"  skipped: {problem}")
        return
    import guestguard

    code = Path(guestguard.__file__).resolve().parents[1]
    with (tempfile.TemporaryDirectory() as tmp, bench_database() as (name, db_url),
          guestguard_url(db_url, name) as ours_url):
        tmp_path = Path(tmp)
        ini, log = tmp_path / "bench.ini", tmp_path / "gunicorn.log"
        guestguard_ini(ini, ours_url)
        start = time.perf_counter()
        data = seed(db_url)
        admin("ANALYZE", name)
        role = "the application role (row-level security applied)" if ours_url != db_url else "the tables' owner"
        print(f"  seeded {len(data['tokens']):,} guests with links in {time.perf_counter() - start:.1f} s;"
              f" GuestGuard's code: {code}; GuestGuard connects as {role}")
        tokens = tmp_path / "tokens.txt"
        tokens.write_text("\n".join(data["tokens"]) + "\n")
        app_env = {"GG_APP_SECRET": "bench-secret-" + "x" * 40, "GG_APP_BASE_URL": "http://127.0.0.1"}
        ours_cm = served("guestguard", ["--paste", str(ini)], app_env, log, name)
        floor_cm = served("floor", ["benchmarks.floor:make_app()"], {"GG_FLOOR_DB_URL": db_url}, log, name)
        results: dict = {}
        with ours_cm as ours, floor_cm as floor:
            auth = login(ours["port"], data["password"])
            scripts = {}
            for kind in ("view", "rsvp", "guests"):
                scripts[kind] = tmp_path / f"{kind}.lua"
                scripts[kind].write_text(LUA % {"kind": kind, "auth": auth if kind == "guests" else "",
                                                "event_id": data["event_id"], "agent": BROWSER})
            for server in (ours, floor):  # warm-up: pools, templates, caches
                for kind in ("view", "guests"):
                    wrk(server["port"], scripts[kind], tokens, 16, WARM_UP)
            chosen = os.environ.get("GG_BENCH_HOTPATH", "view,rsvp,guests").split(",")
            for kind, what in (("view", "invitation page"), ("rsvp", "answer (records)"),
                               ("guests", "guest-list page (50)")):
                if kind not in chosen:
                    continue
                for connections in CONNECTIONS:
                    results[(what, connections)] = side_by_side(floor, ours, scripts[kind], tokens, connections)
            rss = {server["name"]: [rss_mib(pid) for pid in workers_of(server["process"].pid)]
                   for server in (ours, floor)}
            report(results, rss)
            if os.environ.get("GG_BENCH_MIXED", "1") != "0":
                script = tmp_path / "mixed.lua"
                script.write_text(MIXED_LUA % {"auth": auth, "event_id": data["event_id"], "agent": BROWSER})
                # The floor under the same load, turn about with GuestGuard:
                # what these cores give for the same essential work.
                for users in MIXED_USERS:
                    for server in (floor, ours):
                        show_mixed(server["name"], users, measured(server, script, tokens, users, MIXED_SECONDS))
        counts = statements_per_request(db_url, data)
        print("  SQL statements per request (GuestGuard, pool pings apart; the floor: view 2, answer 5, list 1): "
              + ", ".join(f"{name} {count}" for name, count in counts.items()))


def show_mixed(name: str, users: int, result: dict) -> None:
    errors = result["bad"] + result["socket_errors"]
    print(f"  mixed load, {name:<10} {users:>5} users (think time 0.5-1.5 s): {result['rps']:6.0f} req/s,"
          f" p50 {result['p50']:7.1f} ms, p95 {result['p95']:7.1f} ms, p99 {result['p99']:7.1f} ms,"
          f" errors {errors} of {result['requests']} ({errors / max(result['requests'], 1):.1%}),"
          f" CPU {result['cpu_ms']:.2f} + {result['pg_ms']:.2f} ms a request", flush=True)
