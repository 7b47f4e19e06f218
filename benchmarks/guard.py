"""The guard under gunicorn (part 6 of ``make bench``), on the helpers and
the PostgreSQL database / Redis db 13 set-up of part 5 (benchmarks/events.py).

1. The invitation page with the guard on against the same page with it off.
   Two gunicorns (2 gthread workers x 8 threads each, as part 5) run side by
   side from one database: one with ``guard.enabled = true``, one with
   ``false``; one ``guestguard worker`` consumes the Huey queue throughout,
   so the rule evaluations take their CPU from the same 2 cores, as in
   production (with the guard off it only delivers the domain events both
   servers queue for a first open). 50 clients (a browser's User-Agent) GET
   /access/{token} over 250 guests' links, a fresh set each run, in the order
   off, on, off, on; the better of each pair counts. Reported per run:
   requests/s, p50/p95, access_log rows written, the queue left when the load
   stopped and the time the worker took to empty it, and the CPU per request
   (from /proc) of the web workers, of the Huey worker (until the queue is
   empty) and of the run database's PostgreSQL backends. GET /health is the
   floor.
2. Idle live streams one worker process holds: ``-w 1`` under gevent
   (``--worker-connections 10000``) and under gthread (``--threads 1000``),
   with ``guard.stream.url`` on Redis db 13. K streams (each on a fresh
   ticket) are opened from one asyncio loop, K rising; at each K: streams
   that got ``: connected``, the worker's RSS (VmRSS) against before any
   stream and per stream, the fan-out of one RSVP (time from sending it until
   each open stream has its ``event: activity``, p50/max) and GET /health
   meanwhile. The app's caps on streams per process and per holder are
   raised for this, and the bytes of one stream are checked against the
   description (``retry``/``: connected`` first, ``id``/``event``/``data``).
3. Flag latency: links opened from four networks in turn (the ``networks``
   rule's finding), one at a time, on a gunicorn with the guard on and one
   ``guestguard worker``; the time from the fourth page's answer until the
   flag is committed (p50/p95/max; the aim is under 2 s). Runs between 1
   and 2.

Skipped, with a line saying why, when PostgreSQL or Redis is unreachable;
the gevent run is skipped, saying so, when gevent is not installed.
"""
from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
import re
import resource
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.events import (
    CLIENTS,
    PG_SERVER,
    REDIS_URL,
    Client,
    admin,
    bearer,
    bench_database,
    concurrent,
    gunicorn,
    percentiles,
    reachable,
    seed,
    show,
    spawn,
    stop,
    write_ini,
)

BROWSER = {
    "User-Agent": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/131.0.0.0 Safari/537.36"),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
}
ORDER = ("off", "on", "off", "on")
PAGE_PER_CLIENT = 24     # requests per client and run: 1,200 a run, 4 runs
LINKS_PER_RUN = 250      # 1,200 views over 250 links: about 5 each, under the burst rule's 10 in 5 minutes
SPARE_LINKS = 20         # answered in part 2, one first RSVP per fan-out (each must record)
FLAG_LINKS = 30          # part 3: links opened from four networks in turn, each to a flag
FLAG_LIMIT = 30.0        # seconds to wait for one link's flag
GUESTS = 2_000           # one event; the first LINKS_PER_RUN * 5 + SPARE_LINKS get links
QUEUE_KEY = "huey.redis.guestguard"  # RedisHuey's list: huey.redis.<huey.name>; polled with LLEN
DRAIN_LIMIT = 120.0      # seconds the worker may take to empty the queue
# Streams open at each step; gthread's last step asks for more than its 1,000 threads.
LEVELS = {"gevent": (100, 500, 1000, 2000), "gthread": (100, 500, 1000, 1200)}
WORKER_CLASSES = {
    "gevent": ("--workers", "1", "--worker-class", "gevent", "--worker-connections", "10000"),
    "gthread": ("--workers", "1", "--worker-class", "gthread", "--threads", "1000", "--worker-connections", "10000"),
}
# The app's caps (guard.stream.max_streams, 4 a process by default; max_per_holder,
# 2 per person or key, at most 1,000) are raised to find what a worker holds;
# the tickets come from HOLDERS API keys in turn.
STREAM_LIMITS = {"guard.stream.max_streams": "100000", "guard.stream.max_per_holder": "1000"}
HOLDERS = 4
HEARTBEAT = 5            # seconds (default 15): heartbeats show up within a level, and closed streams end soon
OPEN_PATIENCE = 3.0      # seconds without one more stream connecting before a level is taken as full
FANOUT_LIMIT = 10.0      # seconds to wait for every stream to get the RSVP's activity
TICKET_CLIENTS = 8       # keep-alive connections asking for tickets
TICKET_LIFE = 50.0       # seconds a fetched ticket is used within (they are valid 60)
LOCK_SECONDS = 2.0       # one stream's ticket redemption kept waiting on a PostgreSQL lock
CHUNK_LINE = re.compile(rb"^[0-9a-fA-F]+\r\n$")


# --- the process's numbers ---------------------------------------------------------


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def rss_mib(pid: int) -> float:
    return int(status_of(pid)["VmRSS"].split()[0]) / 1024


def cpu_seconds(*pids: int) -> float:
    """User + system CPU the processes have used (not their children);
    one that is gone counts nothing."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def backends(name: str) -> dict[int, float]:
    """CPU used so far by each PostgreSQL backend connected to database ``name``."""
    pids = admin(f"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname = '{name}' "
                 "AND pid <> pg_backend_pid()")
    return {int(pid): cpu_seconds(int(pid)) for pid in (pids or "").split(",") if pid}


def backend_cpu(before: dict[int, float], name: str) -> float:
    """CPU the database's backends used since ``before`` (one that exited
    meanwhile, an overflow connection, takes its share along: a lower bound)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in backends(name).items())


def log_problems(log: Path) -> list[str]:
    """Distinct lines of a server or worker log that tell of a problem."""
    if not log.exists():
        return []
    lines = re.findall(r"^.*(?:Traceback|\bERROR\b|CRITICAL|WORKER TIMEOUT|Warning).*$", log.read_text(), re.MULTILINE)
    return list(dict.fromkeys(line[:400] for line in lines))


# --- 1. the invitation page, guard on and off ------------------------------------------


def huey_lists(queue) -> set[str]:
    """The lists Huey keeps in Redis db 13 (an empty list does not exist)."""
    return {key.decode() for key in queue.scan_iter("huey.redis.*") if queue.type(key) == b"list"}


def drain(queue, key: str) -> tuple[int, float]:
    """The queue's length now, and the seconds until the worker emptied it."""
    backlog, start = queue.llen(key), time.perf_counter()
    while queue.llen(key) and time.perf_counter() - start < DRAIN_LIMIT:
        time.sleep(0.02)
    return backlog, time.perf_counter() - start


def page_run(port: int, servers: list[int], worker: int, tokens: list[str], name: str, queue, key: str) -> dict:
    """One concurrent run over ``tokens``, then the worker's drain."""
    counter = itertools.count()

    def page():
        return "GET", f"/access/{tokens[next(counter) % len(tokens)]}", None

    rows, cpu, work = admin("SELECT count(*) FROM access_log", name), cpu_seconds(*servers), cpu_seconds(worker)
    database = backends(name)
    result = concurrent(port, page, PAGE_PER_CLIENT, BROWSER)
    result["lists"] = huey_lists(queue)
    requests = max(1, result["ok"] + len(result["failed"]))
    result["server_ms"] = (cpu_seconds(*servers) - cpu) * 1e3 / requests
    result["backlog"], result["drain"] = drain(queue, key)
    result["worker_s"] = cpu_seconds(worker) - work
    result["worker_ms"] = result["worker_s"] * 1e3 / requests
    result["postgres_ms"] = backend_cpu(database, name) * 1e3 / requests
    # The rate had the requests waited for their rule evaluations too.
    result["settled_rps"] = result["ok"] / (result["ok"] / result["rps"] + result["drain"])
    result["rows"] = admin("SELECT count(*) FROM access_log", name) - rows
    return result


def throughput(tmp: Path, name: str, db_url: str, data: dict, queue) -> None:
    inis = {state: tmp / f"guard-{state}.ini" for state in ("on", "off")}
    for state, ini in inis.items():
        write_ini(ini, db_url, {"guard.enabled": str(state == "on").lower(), "guard.stream.url": REDIS_URL})
    log = tmp / "guard.log"
    worker = spawn(["guestguard", "worker", str(inis["on"])], log)
    try:
        with gunicorn(inis["on"], log) as (on, on_port), gunicorn(inis["off"], log) as (off, off_port):
            ports = {"on": on_port, "off": off_port}
            servers = {"on": children(on.pid), "off": children(off.pid)}
            slices = [data["tokens"][i * LINKS_PER_RUN:(i + 1) * LINKS_PER_RUN] for i in range(len(ORDER) + 1)]
            for port in ports.values():  # warm-up: connections, pools, templates, the worker's first tasks
                warm = itertools.cycle(slices[-1])
                concurrent(port, lambda warm=warm: ("GET", f"/access/{next(warm)}", None), 4, BROWSER)
            drain(queue, QUEUE_KEY)
            print(f"  invitation page, guard on vs off: {CLIENTS} concurrent clients x {PAGE_PER_CLIENT} requests, "
                  f"{LINKS_PER_RUN} links a run (a fresh set each), one guestguard worker throughout")
            floor = concurrent(off_port, lambda: ("GET", "/health", None))
            show("GET /health (floor)", floor)
            runs: dict[str, list[dict]] = {"on": [], "off": []}
            for state, tokens in zip(ORDER, slices[:len(ORDER)], strict=True):
                result = page_run(ports[state], servers[state], worker.pid, tokens, name, queue, QUEUE_KEY)
                runs[state].append(result)
                show(f"GET /access/{{token}} guard {state}", result, floor)
                print(f"  {'':34} {result['rows']} access_log rows; queue at stop {result['backlog']}, emptied in "
                      f"{result['drain']:.2f} s; CPU ms/request: web {result['server_ms']:.2f}, worker "
                      f"{result['worker_ms']:.2f}, PostgreSQL {result['postgres_ms']:.2f}")
    finally:
        stop(worker)
    best = {state: max(results, key=lambda r: r["rps"]) for state, results in runs.items()}
    on, off = best["on"], best["off"]
    seen = ", ".join(sorted(set().union(*(r["lists"] for r in runs["on"])))) or "none"
    print(f"  better of two, on/off: req/s {on['rps'] / off['rps']:.2f}x (aim >= 0.8x), "
          f"p50 {on['p50'] / off['p50']:.2f}x,"
          f" p95 {on['p95'] / off['p95']:.2f}x; counting the worker's drain {on['settled_rps']:.0f} vs "
          f"{off['settled_rps']:.0f} req/s, {on['settled_rps'] / off['settled_rps']:.2f}x")
    total = {state: r["server_ms"] + r["worker_ms"] + r["postgres_ms"] for state, r in best.items()}
    print(f"  CPU per page view, on vs off: web {on['server_ms']:.2f} vs {off['server_ms']:.2f} ms, worker "
          f"{on['worker_ms']:.2f} vs {off['worker_ms']:.2f} ms, PostgreSQL {on['postgres_ms']:.2f} vs "
          f"{off['postgres_ms']:.2f} ms; in all {total['on']:.1f} vs {total['off']:.1f} ms "
          f"(off/on {total['off'] / total['on']:.2f}x); "
          f"flags raised {admin('SELECT count(*) FROM flags', name)}; Huey lists in "
          f"Redis at the end of the load: {seen}")


# --- 3. flag latency ------------------------------------------------------------------


def flag_latency(tmp: Path, db_url: str, tokens: list[str]) -> None:
    """Each link opened from four networks (one device, within a second:
    the ``networks`` rule's finding), one link at a time; the time from the
    fourth page's answer until its flag is committed, polled in the
    database every 5 ms. One gunicorn (guard on, trusting 127.0.0.1 as its
    proxy) and one ``guestguard worker``, as in production."""
    from sqlalchemy import create_engine, text

    ini = tmp / "guard-flags.ini"
    write_ini(ini, db_url, {"guard.stream.url": REDIS_URL, "app.trusted_proxies": "127.0.0.1"})
    log = tmp / "guard.log"
    worker = spawn(["guestguard", "worker", str(ini)], log)
    engine = create_engine(db_url)
    count = text("SELECT count(*) FROM flags")
    latencies, missing = [], 0
    try:
        with gunicorn(ini, log) as (_, port), engine.connect() as db:
            client = Client(port)
            for number, token in enumerate(tokens):
                flags = db.execute(count).scalar()
                db.commit()
                for network in range(4):
                    client.call("GET", f"/access/{token}", None,
                                {**BROWSER, "X-Forwarded-For": f"198.{number % 200 + 18}.{network}.7"})
                start = time.perf_counter()
                while db.execute(count).scalar() == flags and time.perf_counter() - start < FLAG_LIMIT:
                    db.commit()
                    time.sleep(0.005)
                db.commit()
                if db.execute(count).scalar() == flags:
                    missing += 1
                else:
                    latencies.append(time.perf_counter() - start)
                db.commit()
    finally:
        stop(worker)
        engine.dispose()
    latencies.sort()
    if not latencies:
        print(f"  flag latency: no flag within {FLAG_LIMIT:.0f} s for any of {len(tokens)} links")
        return
    p50, p95 = percentiles(latencies)
    print(f"  flag latency (fourth network's page answered -> flag committed), {len(latencies)} links one at a "
          f"time: p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, max {latencies[-1] * 1e3:.0f} ms (aim < 2 s)"
          f"{f'; {missing} without a flag within {FLAG_LIMIT:.0f} s' if missing else ''}")


# --- 2. idle live streams ------------------------------------------------------------


def stream_request(url: str) -> bytes:
    return (f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"User-Agent: {BROWSER['User-Agent']}\r\n\r\n").encode()


class Stream:
    """One Server-Sent Events connection, read line by line."""

    def __init__(self, keep: bool = False):
        self.connected = asyncio.Event()
        self.status = 0
        self.content_type = ""
        self.heartbeats = 0
        self.activity: list[float] = []   # perf_counter() at each ``event: activity``
        self.lines: list[bytes] | None = [] if keep else None
        self.writer: asyncio.StreamWriter | None = None
        self.error = ""
        self.done = False

    async def run(self, port: int, url: str) -> None:
        try:
            reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
            self.writer.write(stream_request(url))
            self.status = int((await reader.readline()).split()[1])
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-type:"):
                    self.content_type = line.split(b":", 1)[1].strip().decode()
            while line := await reader.readline():
                if CHUNK_LINE.match(line) or line == b"\r\n":
                    continue  # chunked transfer framing
                if self.lines is not None and len(self.lines) < 40:
                    self.lines.append(line)
                if line.startswith(b": connected"):
                    self.connected.set()
                elif line.startswith(b": heartbeat"):
                    self.heartbeats += 1
                elif line.startswith(b"event: activity"):
                    self.activity.append(time.perf_counter())
            self.error = self.error or "closed by the server"
        except (OSError, ValueError, IndexError) as exc:
            self.error = type(exc).__name__
        finally:
            self.done = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def checked(sample: Stream) -> str:
    """What in the sample stream's bytes differs from the description."""
    lines = sample.lines or []
    problems = []
    if sample.content_type.split(";")[0] != "text/event-stream":
        problems.append(f"content type {sample.content_type!r}")
    if lines[:3] != [b"retry: 3000\n", b": connected\n", b"\n"]:
        problems.append(f"opening {b''.join(lines[:3])!r}")
    for i, line in enumerate(lines):
        if line.startswith(b"event: activity"):
            if not (i and lines[i - 1].startswith(b"id: ") and lines[i + 1:i + 2]
                    and lines[i + 1].startswith(b"data: ")):
                problems.append(f"activity message {b''.join(lines[max(0, i - 1):i + 3])!r}")
            else:
                json.loads(lines[i + 1][6:])
    return "; ".join(problems) or "as described"


class StreamBench:
    """Opens streams on one gunicorn worker, K rising, and measures each K."""

    def __init__(self, port: int, pid: int, db_url: str, data: dict, answers):
        self.port, self.pid, self.db_url, self.data, self.answers = port, pid, db_url, data, answers
        self.executor = ThreadPoolExecutor(TICKET_CLIENTS + 2)
        self.clients = [Client(port, timeout=5) for _ in range(TICKET_CLIENTS)]
        self.auth: dict = {}
        self.holders = itertools.cycle([{}])
        self.stock: list[tuple[float, str]] = []   # (fetched at, stream url)
        self.streams: list[Stream] = []
        self.tasks: list[asyncio.Task] = []

    async def call(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    def tickets(self, client: Client, count: int) -> list[tuple[float, str]]:
        got, retried = [], False
        while len(got) < count:
            _, status, body = client.call("POST", "/api/v1/auth/stream-ticket", {"event_id": self.data[GUESTS]},
                                          next(self.holders))
            if status == 0 and not retried:
                retried = True  # the server closed the idle keep-alive connection; Client reconnects
                continue
            if status != 201:
                break  # no answer in 5 s: the worker is saturated
            got.append((time.monotonic(), json.loads(body)["stream_url"]))
        return got

    async def restock(self, count: int) -> None:
        """At least ``count`` fresh tickets in stock, if the worker gives them."""
        self.stock = [item for item in self.stock if time.monotonic() - item[0] < TICKET_LIFE]
        need = count - len(self.stock)
        if need > 0:
            shares = [need // TICKET_CLIENTS + (i < need % TICKET_CLIENTS) for i in range(TICKET_CLIENTS)]
            calls = (self.call(self.tickets, c, n) for c, n in zip(self.clients, shares, strict=False))
            for got in await asyncio.gather(*calls):
                self.stock.extend(got)

    async def open(self, count: int, keep: bool = False) -> list[Stream]:
        """Open up to ``count`` streams; wait until all connected or none
        more did for OPEN_PATIENCE seconds."""
        new = [Stream(keep and i == 0) for i in range(min(count, len(self.stock)))]
        urls, self.stock = self.stock[:len(new)], self.stock[len(new):]
        self.streams.extend(new)
        self.tasks.extend(asyncio.create_task(s.run(self.port, url)) for s, (_, url) in zip(new, urls, strict=False))
        last, since = -1, time.monotonic()
        while True:
            settled = sum(s.connected.is_set() or s.done for s in self.streams)
            if settled == len(self.streams) or time.monotonic() - since > OPEN_PATIENCE:
                return new
            if settled != last:
                last, since = settled, time.monotonic()
            await asyncio.sleep(0.05)

    def answer(self, token: str):
        return Client(self.port, timeout=5).call("POST", f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 0})

    async def fan_out(self) -> dict:
        """One RSVP; seconds until each open stream had its activity."""
        live = [s for s in self.streams if s.connected.is_set() and not s.done]
        before = [len(s.activity) for s in live]
        start = time.perf_counter()
        answered = asyncio.ensure_future(self.call(self.answer, next(self.answers)))
        while time.perf_counter() - start < FANOUT_LIMIT and any(
                len(s.activity) == n for s, n in zip(live, before, strict=True)):
            if answered.done() and answered.result()[1] != 200:
                break  # refused or not answered: nothing to deliver
            await asyncio.sleep(0.005)
        seconds, status, _ = await answered
        latencies = sorted(s.activity[n] - start for s, n in zip(live, before, strict=True) if len(s.activity) > n)
        return {"reached": len(latencies), "of": len(live), "status": status, "rsvp": seconds,
                "p50": statistics.median(latencies) if latencies else float("nan"),
                "max": latencies[-1] if latencies else float("nan")}

    def health(self, count: int = 10) -> list[float]:
        client, samples = Client(self.port, timeout=3), []
        for _ in range(count):
            seconds, status, _ = client.call("GET", "/health")
            if status != 200:
                break
            samples.append(seconds)
        client.close()
        return samples

    def keys(self) -> list[dict]:
        """HOLDERS staff API keys of the host's workspace, as Authorization headers."""
        client = self.clients[0]
        _, _, body = client.call("GET", "/api/v1/workspaces", headers=self.auth)
        workspace = json.loads(body)["workspaces"][0]["id"]
        headers = []
        for i in range(HOLDERS):
            _, status, body = client.call("POST", f"/api/v1/workspaces/{workspace}/api-keys",
                                          {"name": f"stream bench {i}", "role": "staff"}, self.auth)
            if status != 201:
                raise RuntimeError(f"creating an API key answered {status}: {body[:200]!r}")
            headers.append({"Authorization": f"Bearer {json.loads(body)['api_key']['secret']}"})
        return headers

    def lock_probe(self) -> float:
        """Seconds /health takes while one stream's ticket redemption waits
        LOCK_SECONDS on a lock in PostgreSQL: milliseconds when waiting on
        the database leaves the worker free, LOCK_SECONDS when it holds it."""
        from sqlalchemy import create_engine, text

        _, url = self.stock.pop()
        engine = create_engine(self.db_url)
        waiter = socket.create_connection(("127.0.0.1", self.port))
        try:
            with engine.connect() as lock:
                lock.execute(text("LOCK TABLE stream_tickets IN EXCLUSIVE MODE"))
                waiter.sendall(stream_request(url))
                time.sleep(0.2)  # the redemption's UPDATE reaches the lock
                probe = self.executor.submit(Client(self.port, timeout=3 * LOCK_SECONDS).call, "GET", "/health")
                time.sleep(LOCK_SECONDS)
                lock.rollback()
            seconds, status, _ = probe.result()
            return seconds if status == 200 else float("inf")
        finally:
            waiter.close()
            engine.dispose()

    async def run(self, levels: tuple[int, ...]) -> None:
        self.auth = await self.call(bearer, self.clients[0], self.data)
        self.holders = itertools.cycle(await self.call(self.keys))
        await self.call(self.health, 20)
        await self.restock(11)  # warm-up: the stream path, the Redis subscription, one fan-out
        blocked = await self.call(self.lock_probe)
        print(f"    /health while one request waits {LOCK_SECONDS:.0f} s on a PostgreSQL lock: {blocked:.2f} s"
              + (" (the wait holds the whole worker)" if blocked > LOCK_SECONDS / 2 else ""))
        warm = await self.open(10)
        await self.fan_out()
        for stream in warm:  # the worker lets them go at their next heartbeat
            stream.close()
        await asyncio.sleep(1)
        self.streams = []
        base = rss_mib(self.pid)
        print(f"    worker RSS before any stream {base:.1f} MiB, {status_of(self.pid)['Threads']} threads")
        sample = None
        steps = [b - a for a, b in zip((0, *levels[:-1]), levels, strict=True)]
        for i, level in enumerate(levels):
            # This step's tickets and the next one's: once every thread holds a
            # stream (gthread), none is answered any more.
            start = time.perf_counter()
            await self.restock(sum(steps[i:i + 2]))
            fetched, start = time.perf_counter() - start, time.perf_counter()
            new = await self.open(steps[i], keep=sample is None)
            sample = sample or (new[0] if new else None)
            connected = await self.step(level, base)
            print(f"    {'':8}{steps[i]} tickets fetched in {fetched:.1f} s, {len(new)} streams opened and "
                  f"measured in {time.perf_counter() - start:.1f} s")
            if connected < level:
                break  # full: more would only queue
        print(f"    heartbeats received: {sum(s.heartbeats for s in self.streams)} over {len(self.streams)} "
              f"streams; sample stream: {checked(sample) if sample else 'none opened'}")

    async def step(self, level: int, base: float) -> int:
        """Report the streams open now; returns how many are connected."""
        connected = sum(s.connected.is_set() and not s.done for s in self.streams)
        rss = rss_mib(self.pid)
        health = await self.call(self.health)
        fan = await self.fan_out() if health else None  # no /health, no RSVP answered either
        errors = sorted({f"status {s.status}" if s.status not in (0, 200) else s.error
                         for s in self.streams if s.done and not s.connected.is_set()})
        line = (f"    K={level:<5} connected {connected:5}   RSS {rss:6.1f} MiB "
                f"(+{(rss - base) * 1024 / max(1, connected):5.1f} KiB/stream, "
                f"{status_of(self.pid)['Threads']} threads)   ")
        if fan is None:
            line += "fan-out: no RSVP sent"
        elif fan["reached"]:
            line += (f"fan-out {fan['reached']}/{fan['of']} p50 {fan['p50'] * 1e3:6.1f} ms "
                     f"max {fan['max'] * 1e3:6.1f} ms"
                     f" (RSVP answered in {fan['rsvp'] * 1e3:.0f} ms)")
        else:
            line += f"fan-out: none reached (RSVP status {fan['status'] or 'no answer in 5 s'})"
        line += (f"   /health {len(health)}/10 p50 {percentiles(health)[0] * 1e3:.1f} ms" if health
                 else "   /health: no answer in 3 s")
        print(line + (f"   (streams that failed: {', '.join(errors)})" if errors else ""))
        return connected

    async def close(self) -> None:
        for stream in self.streams:
            stream.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            client.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


async def hold(port: int, pid: int, db_url: str, data: dict, answers, levels: tuple[int, ...]) -> None:
    bench = StreamBench(port, pid, db_url, data, answers)
    try:
        await bench.run(levels)
    finally:
        await bench.close()


def streams(tmp: Path, db_url: str, data: dict) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # gunicorn inherits it
    ini, log = tmp / "streams.ini", tmp / "streams.log"
    write_ini(ini, db_url, {"guard.stream.url": REDIS_URL, "guard.stream.heartbeat_seconds": str(HEARTBEAT),
                            **STREAM_LIMITS})
    answers = iter(data["tokens"][-SPARE_LINKS:])
    print(f"  idle live streams on ONE worker process (file limit {hard}, heartbeat every {HEARTBEAT} s, "
          f"Redis pub/sub, one asyncio client; tickets from {HOLDERS} API keys in turn; "
          f"{', '.join(f'{k} = {v}' for k, v in STREAM_LIMITS.items())}):")
    try:
        for label, options in WORKER_CLASSES.items():
            if label == "gevent" and importlib.util.find_spec("gevent") is None:
                print("    gevent: skipped, gevent is not installed (pip install gevent into the venv)")
                continue
            print(f"   {label}: gunicorn {' '.join(options)}")
            with gunicorn(ini, log, (*options, "--graceful-timeout", "3", "--backlog", "4096")) as (process, port):
                asyncio.run(hold(port, children(process.pid)[0], db_url, data, answers, LEVELS[label]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for line in log_problems(log):
            print(f"    server log: {line}")


# --- the run ---------------------------------------------------------------------------


def main() -> None:
    import redis

    print("the guard under gunicorn: invitation page with the guard on vs off, flag latency, idle live streams per "
          "worker")
    print(f"  load average {Path('/proc/loadavg').read_text().split()[0]} on {os.cpu_count()} cores at the start")
    problem = reachable(PG_SERVER)
    if problem:
        print(f"  skipped: {problem}")
        return
    queue = redis.Redis.from_url(REDIS_URL)
    try:
        with tempfile.TemporaryDirectory() as scratch, bench_database() as (name, db_url):
            tmp = Path(scratch)
            try:
                write_ini(tmp / "seed.ini", db_url)
                start = time.perf_counter()
                data = seed(tmp / "seed.ini", sizes=(GUESTS,),
                            links=LINKS_PER_RUN * (len(ORDER) + 1) + SPARE_LINKS + FLAG_LINKS)
                print(f"  seeded {GUESTS:,} guests and {len(data['tokens'])} links in "
                      f"{time.perf_counter() - start:.1f} s")
                throughput(tmp, name, db_url, data, queue)
                flag_latency(tmp, db_url, data["tokens"][-(SPARE_LINKS + FLAG_LINKS):-SPARE_LINKS])
                streams(tmp, db_url, data)
            finally:
                for line in log_problems(tmp / "guard.log"):
                    print(f"  server/worker log: {line}")
    finally:
        queue.close()
    print(f"  load average {Path('/proc/loadavg').read_text().split()[0]} at the end")
