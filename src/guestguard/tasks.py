"""Background work: Huey from settings, ``enqueue`` (after commit), the task context,
durable jobs and the reaper.

Huey delivers a task at most once, so work that matters is a durable job: a
row with ``status``, ``attempts``, ``next_attempt_at`` and ``last_error``.
Its task claims the row with a conditional UPDATE (exactly one claimant wins,
on SQLite and PostgreSQL alike), acts outside the claiming transaction and
records the outcome. A running job holds a lease (``lease_until``) that its
worker renews while it acts (``hold_lease``). The reaper re-enqueues rows whose
task was lost (due but untouched past ``jobs.lost_after``) or whose lease
lapsed (the worker died, or lost the database, mid-run); every worker process
runs it every ``jobs.reap_interval`` seconds in a thread of its own.

Periodic tasks run once per tick however many workers run: each worker's
scheduler queues them stamped with the minute, and the first copy to start
claims that minute in the queue's Redis; the others stand down.

A worker asked to stop (SIGTERM, SIGINT, SIGHUP) takes no new task, lets
the running ones finish within ``jobs.shutdown_grace_seconds``, then
releases the jobs it still holds (``HeldClaims``, filled by ``hold_lease``):
back to pending, due now and queued again, so another worker takes them at
once instead of waiting for their leases to lapse.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from huey import MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer, Scheduler
from huey.storage import RedisStorage
from prometheus_client import Counter, Histogram
from pyramid.scripting import prepare
from sqlalchemy import String, Text, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from guestguard import rls
from guestguard.audit.request_id import current_request_id
from guestguard.db import utcnow

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
# The arguments GuestGuard adds to every queued task start so; a task's own
# never do.
INTERNAL_KWARG_PREFIX = "_gg_"
REQUEST_ID_KWARG = "_gg_request_id"
# The W3C trace context of the span that queued a task (Huey's messages have
# no headers: the task's arguments carry it, as they carry the request id).
TRACE_CONTEXT_KWARG = "_gg_trace_context"
# When a queued task became due (epoch seconds): when it was pushed, or the
# moment it was scheduled for; its wait in the queue is measured from there.
DUE_KWARG = "_gg_due"
# The minute (ISO, UTC) a periodic task was queued for by a worker's scheduler.
TICK_KWARG = "_gg_tick"
# How long the claim of a periodic task's tick is remembered: longer than any
# copy queued by another worker's scheduler may wait before it runs.
TICK_CLAIM_SECONDS = 24 * 3600
# The workspaces (row-level security) of the transaction that queued a task,
# which it runs in (``rls.from_stored``).
SCOPE_KWARG = "_gg_scope"
# What error reporting adds to a task's arguments to carry its trace: a
# worker reporting no errors drops it.
TRACE_KWARG = "sentry_headers"
TASK_RUNS = Counter("gg_task_runs_total", "Task runs by task and outcome (ok, error; skipped: a periodic "
                    "task whose tick another worker ran).", ["task", "outcome"])
TASK_DURATION = Histogram("gg_task_duration_seconds", "Seconds a task ran, by task.", ["task"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
TASK_QUEUE_WAIT = Histogram("gg_task_queue_wait_seconds", "Seconds a task waited in the queue between becoming "
                            "due and starting to run, by task.", ["task"],
                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0))
JOB_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)
# What the reaper writes in last_error when it takes a job back: the attempt's
# outcome is unknown (it may have done its work before the worker stopped).
INTERRUPTED = "lease lapsed: the worker stopped, or lost the database, while running this job"
# What a stopping worker writes in last_error of a job it gives back: the
# attempt's outcome is unknown as well (a provider may have accepted a message).
RELEASED = "released at shutdown: the worker stopped before this job finished"
# The start of last_error after an attempt that ran out of time waiting for
# what it called (a provider): it may have acted, like an interrupted one.
OUTCOME_UNKNOWN = "outcome unknown"
# The longest one reaper pass runs; what is left waits for the next pass.
REAP_PASS_SECONDS = 30


# --- Huey from settings ------------------------------------------------------


def make_huey(settings: dict[str, Any]) -> Huey:
    url: str = settings["huey.url"]
    name: str = settings["huey.name"]
    immediate: bool = settings["huey.immediate"]
    scheme = urlsplit(url).scheme
    # Nobody reads task results: outcomes that matter live in durable rows.
    options = {"immediate": immediate, "utc": True, "results": False}
    if scheme in ("redis", "rediss", "unix"):
        return RedisHuey(name, url=url, **options)
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=path, **options)
    return MemoryHuey(name, **options)


# --- periodic tasks: once per tick, however many workers --------------------


class ClusterScheduler(Scheduler):
    """Huey's scheduler, stamping each periodic task it queues with the
    minute it was queued for. Every worker's scheduler queues every periodic
    task; the first copy to start claims its tick (``claim_tick``) and the
    others stand down."""

    def enqueue_periodic_tasks(self, now):
        # The queue's clock is naive UTC (make_huey sets utc=True).
        tick = (now or dt.datetime.now(dt.UTC).replace(tzinfo=None)).replace(second=0, microsecond=0)
        for task in self.huey.read_periodic(tick):
            task.kwargs.update({TICK_KWARG: tick.isoformat(timespec="minutes"), DUE_KWARG: time.time()})
            try:
                self.huey.enqueue(task)
            except Exception:
                log.exception("could not queue periodic task %s", task.name)


def tick_claim_key(storage: RedisStorage, task: str, tick: str) -> str:
    return f"huey.ticks.{storage.name}.{task}.{tick}"


def claim_tick(huey: Huey, task: str, tick: str) -> bool:
    """Whether this worker runs periodic ``task`` (its full name) for
    ``tick``: the first to ask wins, with SET NX on the queue's Redis, where
    the claim stays ``TICK_CLAIM_SECONDS``. A queue outside Redis serves the
    consumer of one host: it always runs. So does a worker that cannot reach
    Redis (periodic tasks are safe to run twice; a skipped one may not be)."""
    storage = huey.storage
    if not isinstance(storage, RedisStorage):
        return True
    holder = f"{socket.gethostname()}:{os.getpid()}"
    try:
        return bool(storage.conn.set(tick_claim_key(storage, task, tick), holder, nx=True, ex=TICK_CLAIM_SECONDS))
    except redis.RedisError as exc:
        log.warning("could not claim the %s tick of %s (%s); running it", tick, task, type(exc).__name__)
        return True


class WorkerConsumer(Consumer):
    """The consumer of a worker process.

    SIGTERM, SIGINT and SIGHUP all stop it gracefully (Huey's own handlers
    make SIGTERM immediate and SIGHUP a restart in place; a service manager
    sends SIGTERM and restarts the process itself): it takes no new task, the
    running ones get ``jobs.shutdown_grace_seconds`` to finish, and the jobs
    still running after that are released for another worker. A second
    signal stops waiting at once (the release still happens)."""

    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    scheduler_class = ClusterScheduler

    def __init__(self, registry, workers: int, **options: Any):
        super().__init__(registry["huey"], workers=workers, worker_type="thread", **options)
        self.registry = registry
        self.grace: float = registry.settings["jobs.shutdown_grace_seconds"]
        self.reaper: Reaper | None = None
        self.stop_signal: int | None = None
        self.hurry = False

    def _set_signal_handlers(self) -> None:
        for signum in self.STOP_SIGNALS:
            signal.signal(signum, self._stop_requested)

    def _stop_requested(self, signum: int, frame) -> None:
        # A signal handler only takes note; the main loop acts on it.
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.hurry = True

    def loop(self, health_check_ts=None):
        if self.stop_signal is not None and not self.stop_flag.is_set():
            log.info("received %s: stopping (running tasks get %g s)", signal.Signals(self.stop_signal).name,
                     self.grace)
            self.stop(graceful=True)
        return super().loop(health_check_ts)

    def stop(self, graceful: bool = False) -> None:
        """Take no new task; when ``graceful``, wait up to the grace period
        for the running ones; then release the jobs still running."""
        self.stop_flag.set()
        started = time.monotonic()
        threads = [thread for _, thread in self.worker_threads] + [self.scheduler]
        deadline = started + (self.grace if graceful else 0)
        while not self.hurry and time.monotonic() < deadline:
            running = [thread for thread in threads if thread.is_alive()]
            if not running:
                break
            running[0].join(min(0.1, max(deadline - time.monotonic(), 0)))
        released = release_held_jobs(self.registry)
        if self.reaper is not None:
            self.reaper.stop()
        log.info("task consumer stopped after %.1f s (%d running job(s) released)",
                 time.monotonic() - started, released)


class InProcessConsumer(WorkerConsumer):
    """A consumer that runs beside the web server: its threads start without
    taking over the process's signal handlers (the server owns those)."""

    def _set_signal_handlers(self) -> None:
        pass


def start_in_process_consumer(registry) -> InProcessConsumer:
    consumer = InProcessConsumer(registry, workers=registry.settings["huey.workers"], periodic=True,
                                 check_worker_health=False)
    consumer.start()
    # Let a task in progress finish when the server stops, instead of leaving
    # its job claimed until its lease lapses.
    atexit.register(consumer.stop, graceful=True)
    registry["huey.consumer"] = consumer
    consumer.reaper = start_reaper(registry)
    log.info("in-process task consumer started with %d thread(s)", consumer.workers)
    return consumer


def run_worker(registry, workers: int | None = None) -> int:
    """``guestguard worker``: run the tasks (periodic ones included) and the
    reaper until a stop signal; returns the exit status."""
    from guestguard.ops.metrics import serve_worker_metrics

    workers = workers or registry.settings["huey.workers"]
    warn_if_pool_too_small(registry.settings, workers)
    consumer = WorkerConsumer(registry, workers=workers, periodic=True)
    registry["huey.consumer"] = consumer
    consumer.reaper = start_reaper(registry)  # every jobs.reap_interval seconds, beside the task threads
    metrics = serve_worker_metrics(registry.settings)  # metrics.worker_listen; None when empty
    try:
        consumer.run()
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
    return 0


def warn_if_pool_too_small(settings, workers: int) -> bool:
    """Warn (and say True) when the database pool cannot give each of
    ``workers`` threads the two connections a bulk batch takes at once (its
    notes' connection kept while it sends, and one for a lease renewal or a
    give-back) with one to spare for the reaper: a thread short of one waits
    db.pool_timeout and its batch loses notes meanwhile. SQLite has no pool
    size."""
    if settings["db.url"].startswith("sqlite"):
        return False
    connections = settings["db.pool_size"] + settings["db.max_overflow"]
    if connections > 2 * workers:
        return False
    log.warning("db.pool_size + db.max_overflow (%d) should be above twice the worker's %d threads (%d): "
                "a bulk batch holds two connections while it sends", connections, workers, 2 * workers)
    return True


# --- tasks -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    name: str
    func: Callable[..., Any]
    in_transaction: bool


def task_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _runner(registry, spec: TaskSpec) -> Callable[..., Any]:
    """Wrap ``spec.func(request, *args)`` so it runs in a request-like context
    with its own transaction manager and database session."""

    label = spec.name.removeprefix("guestguard.")

    def run(*args: Any, **kwargs: Any) -> Any:
        request_id = kwargs.pop(REQUEST_ID_KWARG, None) or f"task-{uuid.uuid4().hex[:12]}"
        kwargs.pop(TRACE_KWARG, None)
        trace_context = kwargs.pop(TRACE_CONTEXT_KWARG, None)
        scope = rls.from_stored(kwargs.pop(SCOPE_KWARG, None))
        # Present only when this process traces; one that does not drops the context.
        tracing = registry.get("tracing")
        due, tick = kwargs.pop(DUE_KWARG, None), kwargs.pop(TICK_KWARG, None)
        # An argument of ours a later release adds (queued by its web
        # processes while this worker still runs) is not the task's.
        for name in [name for name in kwargs if name.startswith(INTERNAL_KWARG_PREFIX)]:
            log.warning("task %s: dropped %s, an argument this version does not know (a worker older than "
                        "the web processes?)", label, name)
            del kwargs[name]
        if due is not None:
            TASK_QUEUE_WAIT.labels(task=label).observe(max(0.0, time.time() - due))
        if tick is not None and not claim_tick(registry["huey"], spec.name, tick):
            log.info("periodic task %s of %s already ran on another worker", label, tick)
            TASK_RUNS.labels(task=label, outcome="skipped").inc()
            return None
        token = current_request_id.set(request_id)
        started, outcome = time.perf_counter(), "error"
        try:
            with (tracing.task_span(label, trace_context, request_id) if tracing is not None
                  else contextlib.nullcontext()), prepare(registry=registry) as env:
                request = env["request"]
                request.request_id = request_id
                rls.set_scope(request.db, scope)
                if not spec.in_transaction:
                    result = spec.func(request, *args, **kwargs)
                else:
                    with request.tm:
                        result = spec.func(request, *args, **kwargs)
            outcome = "ok"
            return result
        finally:
            current_request_id.reset(token)
            TASK_DURATION.labels(task=label).observe(time.perf_counter() - started)
            TASK_RUNS.labels(task=label, outcome=outcome).inc()

    # Huey names a task after its function's module and name.
    run.__module__ = spec.func.__module__
    run.__name__ = run.__qualname__ = spec.func.__qualname__
    return run


def add_task(config, func: Callable[..., Any], *, in_transaction: bool = True,
             periodic: crontab | None = None) -> None:
    """Config directive: register ``func(request, *args)`` as a Huey task.

    With ``in_transaction`` (the default) the task body runs inside one
    transaction that commits when it returns. Otherwise the body manages
    ``with request.tm:`` blocks itself (durable jobs do, to act between two).
    """
    registry = config.registry
    spec = TaskSpec(task_name(func), func, in_transaction)
    huey: Huey = registry["huey"]
    runner = _runner(registry, spec)
    wrapper = huey.periodic_task(periodic)(runner) if periodic is not None else huey.task()(runner)
    registry["huey.tasks"][spec.name] = wrapper


def add_periodic_task(config, func: Callable[..., Any], schedule: crontab, **options) -> None:
    add_task(config, func, periodic=schedule, **options)


def enqueue(ctx, func: Callable[..., Any], *args: Any,
            delay: float | None = None, eta: dt.datetime | None = None) -> None:
    """Queue ``func`` to run once the transaction of ``ctx`` (a service
    context, or a task's request: anything with ``registry``, ``tm`` and
    ``request_id``) commits; ``eta`` must be timezone-aware.

    Nothing is queued when the transaction aborts, and the task sees the
    committed rows. A failure to push is logged and swallowed: durable jobs
    are recovered by the reaper.
    """
    name = task_name(func)
    if eta is not None and eta.tzinfo is None:
        raise ValueError("eta must be timezone-aware")
    try:
        wrapper = ctx.registry["huey.tasks"][name]
    except KeyError:
        raise LookupError(f"{name} is not a registered task (use config.add_task)") from None

    # The task's log lines carry the id of the request that queued it, and
    # its span is a child of the one current here.
    kwargs: dict[str, Any] = {REQUEST_ID_KWARG: getattr(ctx, "request_id", None) or current_request_id.get()}
    tracing = ctx.registry.get("tracing")
    if tracing is not None and (trace_context := tracing.carrier()):
        kwargs[TRACE_CONTEXT_KWARG] = trace_context
    stored_scope = rls.scope_of(ctx.db).stored()
    if stored_scope is not None:
        kwargs[SCOPE_KWARG] = stored_scope

    def after_commit(committed: bool) -> None:
        if not committed:
            return
        kwargs[DUE_KWARG] = eta.timestamp() if eta is not None else time.time() + (delay or 0)
        try:
            if delay is None and eta is None:
                wrapper(*args, **kwargs)
            else:
                # Aware datetimes: Huey reads a naive one as local time.
                wrapper.schedule(args=args, kwargs=kwargs, delay=delay, eta=eta)
        except Exception:
            log.exception("could not enqueue task %s", name)

    ctx.tm.get().addAfterCommitHook(after_commit)


# Jobs a transaction queues together go to the worker this many to a task.
JOB_BATCH = 50
_batches: dict[type, object] = {}


def enqueue_job_batched(ctx, model: type, job_id: Any, batch_task: Callable[..., Any]) -> None:
    """Queue ``job`` after commit with the other jobs of its kind this
    transaction queues this way: ``batch_task(ids)`` per JOB_BATCH of them,
    or the kind's own task for a job queued alone. A bulk action's thousands
    of jobs cost the queue and the worker one task per batch, not per job."""
    marker = _batches.setdefault(model, object())
    txn = ctx.tm.get()
    try:
        pending = txn.data(marker)
    except KeyError:
        pending = []
        txn.set_data(marker, pending)
        single = job_task(ctx.registry, model)

        def push() -> None:
            if len(pending) == 1:
                enqueue(ctx, single, pending[0])
                return
            for start in range(0, len(pending), JOB_BATCH):
                enqueue(ctx, batch_task, pending[start:start + JOB_BATCH])

        # Before the commit, so each push is registered as an after-commit
        # hook of this very transaction (and dropped with it).
        txn.addBeforeCommitHook(push)
    pending.append(job_id)


def run_task_now(registry, func: Callable[..., Any], *args: Any) -> Any:
    """Run a registered task synchronously in its own context (CLI, tests)."""
    return registry["huey.tasks"][task_name(func)].call_local(*args)


# --- durable jobs ------------------------------------------------------------


class DurableJobMixin:
    """Columns of a unit of work that must not be lost."""

    # The words for the two final states; a kind may use its own (domain
    # events are "delivered" or "dead").
    succeeded_status = SUCCEEDED
    failed_status = FAILED

    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # While running: the worker holds the job until then, and renews it.
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


@dataclass(frozen=True)
class DurableKind:
    model: type
    task: Callable[..., Any]
    max_attempts: int
    on_give_up: Callable[[Any], None] | None
    # An extra condition a pending row must meet to be claimed (and to count
    # as lost): domain events wait for the earlier ones of their aggregate.
    ready: Callable[[type], Any] | None = None


def add_durable_job(config, model: type, task: Callable[..., Any], *, max_attempts: int,
                    on_give_up: Callable[[Any], None] | None = None,
                    ready: Callable[[type], Any] | None = None) -> None:
    """Config directive: let the reaper recover rows of ``model`` by
    enqueueing ``task(job_id)``. A job whose worker died ``max_attempts``
    times is failed, and ``on_give_up(job)`` tidies it (drops secrets...).
    ``ready(model)``, when given, is a SQL condition a pending row must also
    meet to be claimed; a row that does not meet it is not lost, only waiting."""
    config.registry["jobs.kinds"].append(DurableKind(model, task, max_attempts, on_give_up, ready))


def durable_kind(registry, model: type) -> DurableKind:
    for kind in registry["jobs.kinds"]:
        if kind.model is model:
            return kind
    raise LookupError(f"{model.__name__} is not a durable job (use config.add_durable_job)")


def job_task(registry, model: type) -> Callable[..., Any]:
    """The task registered (``add_durable_job``) to work rows of ``model``."""
    return durable_kind(registry, model).task


def enqueue_job(ctx, job, eta: dt.datetime | None = None) -> None:
    """Queue the job's registered task for ``job`` after commit."""
    enqueue(ctx, job_task(ctx.registry, type(job)), job.id, eta=eta)


def lease_for(settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings["jobs.lease_seconds"])


def update_if(db, model: type, conditions: Sequence[Any], **values: Any) -> bool:
    """UPDATE the one row meeting ``conditions``, if it still does: whether
    it did. Each step of a job is such a guarded UPDATE, so two workers (or a
    worker and the reaper) racing on a row leave it as one of them would."""
    return db.execute(
        update(model).where(*conditions).values(**values).execution_options(synchronize_session=False)
    ).rowcount == 1


def claim_job(ctx, model: type, job_id, task: Callable[..., Any] | None = None):
    """Mark a due pending job as running, leased for ``jobs.lease_seconds``,
    and return it. None when it is claimed by someone else or finished; a job
    not yet due (the task came early, or this worker's clock is behind) is
    queued again for its time (by ``task``, the job's registered task unless
    given)."""
    db = ctx.db
    now = utcnow()
    conditions = [model.id == job_id, model.status == PENDING, model.next_attempt_at <= now]
    ready = durable_kind(ctx.registry, model).ready
    if ready is not None:
        conditions.append(ready(model))
    won = update_if(db, model, conditions, status=RUNNING, claimed_at=now,
                    lease_until=now + lease_for(ctx.registry.settings), attempts=model.attempts + 1)
    job = db.get(model, job_id, populate_existing=True)
    if won:
        return job
    if job is not None and job.status == PENDING and job.next_attempt_at > now:
        enqueue(ctx, task or job_task(ctx.registry, model), job_id, eta=job.next_attempt_at)
    return None


def claim_jobs(ctx, model: type, job_ids: Sequence[Any], columns: Sequence[Any] | None = None) -> list[Any]:
    """``claim_job`` for jobs queued together (a bulk action's): one guarded
    UPDATE claims every one of them that is due, pending and ready, at one
    time (their common ``claimed_at``); returns those, in the order given:
    the jobs, or with ``columns`` rows of their id and those columns (no
    objects built for a caller that only reads them). One not yet due is
    queued again (alone, by the kind's task) for its time; one claimed by
    someone else, finished, or not ready is left alone."""
    if not job_ids:
        return []
    db = ctx.db
    now = utcnow()
    conditions = [model.id.in_(list(job_ids)), model.status == PENDING, model.next_attempt_at <= now]
    ready = durable_kind(ctx.registry, model).ready
    if ready is not None:
        conditions.append(ready(model))
    # The claimed rows come back from the UPDATE itself; the others are read
    # only when some were not claimed (one not yet due is queued for then).
    claim = update(model).where(*conditions).values(
        status=RUNNING, claimed_at=now, lease_until=now + lease_for(ctx.registry.settings),
        attempts=model.attempts + 1)
    if columns is None:
        claimed = {job.id: job for job in db.scalars(claim.returning(model).execution_options(
            synchronize_session=False, populate_existing=True))}
    else:
        claimed = {row.id: row for row in db.execute(claim.returning(model.id, *columns).execution_options(
            synchronize_session=False))}
    others = [job_id for job_id in job_ids if job_id not in claimed]
    if others:
        for job in db.scalars(select(model).where(model.id.in_(others), model.status == PENDING,
                                                  model.next_attempt_at > now)):
            enqueue(ctx, job_task(ctx.registry, model), job.id, eta=job.next_attempt_at)
    return [claimed[job_id] for job_id in dict.fromkeys(job_ids) if job_id in claimed]


def renew_lease(registry, model: type, job_id, claimed_at: dt.datetime) -> bool:
    """Extend the lease of the claim made at ``claimed_at``, on a connection
    of its own (the worker holds no transaction while it acts). False when
    the claim is no longer held: the reaper took the job back."""
    return renew_leases(registry, model, [job_id], claimed_at) == 1


def renew_leases(registry, model: type, job_ids: Sequence[Any], claimed_at: dt.datetime) -> int:
    """``renew_lease`` for jobs claimed together (one UPDATE); how many of
    the claims are still held."""
    now = utcnow()
    with registry["db.engine"].begin() as connection:
        # The lease keeper's own connection, not a task's session: any workspace's job.
        rls.apply_to(connection, rls.SYSTEM)
        return connection.execute(
            update(model)
            .where(model.id.in_(list(job_ids)), model.status == RUNNING, model.claimed_at == claimed_at)
            .values(lease_until=now + lease_for(registry.settings))
        ).rowcount


class LeaseKeeper(threading.Thread):
    """Renews the leases of jobs claimed together every third of
    ``jobs.lease_seconds`` until stopped: the heartbeat of a worker that is
    alive."""

    def __init__(self, registry, model: type, job_ids: Sequence[Any], claimed_at: dt.datetime):
        super().__init__(name=f"lease-{job_ids[0]}", daemon=True)
        self.registry, self.model, self.job_ids, self.claimed_at = registry, model, list(job_ids), claimed_at
        self.lease = registry.settings["jobs.lease_seconds"]
        self.every = self.lease / 3
        self.stopped = threading.Event()
        self.lost = False
        # When the leases were last known to hold (the claim made them fresh).
        self.held_at = time.monotonic()

    def run(self) -> None:
        failing = False
        while not self.stopped.wait(self.every):
            job_ids = self.job_ids  # let_go may replace it meanwhile
            if not job_ids:
                continue
            try:
                held = renew_leases(self.registry, self.model, job_ids, self.claimed_at)
            except Exception as exc:  # the database is away: try again, the lease may still hold
                if not failing:
                    log.warning("could not renew the lease of %s %s: %s", self.model.__tablename__,
                                self.job_ids[0], type(exc).__name__)
                failing = True
                continue
            failing = False
            if held == len(job_ids):
                self.held_at = time.monotonic()
            else:
                self.lost = True
                log.warning("%d of %d %s (the first %s) were taken back while they ran (their lease had lapsed)",
                            len(job_ids) - held, len(job_ids), self.model.__tablename__, job_ids[0])
                if not held:
                    return

    @property
    def at_risk(self) -> bool:
        """Whether a job may be taken back from under its worker: one was
        already, or no renewal has held for half a lease (the database is
        away). Work that must not be done twice stops here."""
        return self.lost or time.monotonic() - self.held_at > self.lease / 2

    def let_go(self, job_ids: Sequence[Any]) -> None:
        """Stop renewing these (given back before they ran)."""
        gone = set(job_ids)
        self.job_ids = [job_id for job_id in self.job_ids if job_id not in gone]

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)


class HeldClaims:
    """The claims this process holds (jobs it is running, lease kept): what
    a stopping worker gives back when its grace period is over."""

    def __init__(self):
        self._lock = threading.Lock()
        self._claims: dict[tuple[type, Any], dt.datetime] = {}

    def add(self, model: type, job_id, claimed_at: dt.datetime) -> None:
        with self._lock:
            self._claims[(model, job_id)] = claimed_at

    def discard(self, model: type, job_id, claimed_at: dt.datetime) -> None:
        with self._lock:
            if self._claims.get((model, job_id)) == claimed_at:
                del self._claims[(model, job_id)]

    def __iter__(self):
        """(model, job id, claimed at) of each claim held now."""
        with self._lock:
            held = list(self._claims.items())
        return iter([(model, job_id, claimed_at) for (model, job_id), claimed_at in held])

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)


@contextlib.contextmanager
def hold_lease(ctx, model: type, job_id, claimed_at: dt.datetime):
    """Keep the lease of a claimed job while the block runs (the act step),
    and list the claim among those this process holds meanwhile."""
    with hold_leases(ctx, model, [job_id], claimed_at) as keeper:
        yield keeper


@contextlib.contextmanager
def hold_leases(ctx, model: type, job_ids: Sequence[Any], claimed_at: dt.datetime):
    """``hold_lease`` for jobs claimed together (``claim_jobs``): one keeper
    renews them all."""
    held: HeldClaims = ctx.registry["jobs.held"]
    keeper = LeaseKeeper(ctx.registry, model, job_ids, claimed_at)
    for job_id in job_ids:
        held.add(model, job_id, claimed_at)
    keeper.start()
    try:
        yield keeper
    finally:
        keeper.stop()
        for job_id in job_ids:
            held.discard(model, job_id, claimed_at)


def release_held_jobs(registry) -> int:
    """Give back every job this process still holds: pending, due now, lease
    cleared, ``last_error`` saying so, and queued again for another worker.
    Returns how many were released. A claim the reaper (or an outcome) took
    meanwhile is left alone; a database that cannot be reached leaves the
    jobs to the reaper once their leases lapse."""
    held = list(registry["jobs.held"])
    if not held:
        return 0
    released = 0
    try:
        with prepare(registry=registry) as env:
            request = env["request"]
            rls.set_scope(request.db, rls.SYSTEM)
            with request.tm:
                for model, job_id, claimed_at in held:
                    released += _release(request, durable_kind(registry, model), job_id, claimed_at)
    except Exception as exc:
        log.warning("could not release %d running job(s) at shutdown (%s); the reaper takes them back "
                    "once their leases lapse", len(held), type(exc).__name__)
        return 0
    log.warning("released %d running job(s) at shutdown for another worker", released)
    return released


def give_back(ctx, model: type, job_ids: Sequence[Any], claimed_at: dt.datetime) -> list[Any]:
    """Undo the claim made at ``claimed_at`` on jobs not yet acted on (the
    rest of a batch): pending and due now, the attempt not counted, each
    queued again by the kind's own task for another thread or worker.
    Returns the ids given back (a claim the reaper took meanwhile is not
    ours to give)."""
    if not job_ids:
        return []
    with rls.as_system(ctx.db), ctx.tm:
        given = list(ctx.db.scalars(
            update(model).where(model.id.in_(list(job_ids)), model.status == RUNNING,
                                model.claimed_at == claimed_at)
            .values(status=PENDING, next_attempt_at=utcnow(), claimed_at=None, lease_until=None,
                    attempts=model.attempts - 1)
            .returning(model.id).execution_options(synchronize_session=False)))
        task = durable_kind(ctx.registry, model).task
        for job_id in given:
            enqueue(ctx, task, job_id)
    return given


def _release(request, kind: DurableKind, job_id, claimed_at: dt.datetime) -> bool:
    model = kind.model
    if not update_if(request.db, model, (model.id == job_id, model.status == RUNNING, model.claimed_at == claimed_at),
                     status=PENDING, next_attempt_at=utcnow(), claimed_at=None, lease_until=None,
                     last_error=f"{RELEASED}; retrying"):
        return False
    enqueue(request, kind.task, job_id)
    return True


def still_claimed(job, claimed_at: dt.datetime) -> bool:
    """Whether ``job`` is still held by the claim made at ``claimed_at``: the
    reaper may have taken it back from a worker it believed dead."""
    return job.status == RUNNING and job.claimed_at == claimed_at


def finish_job(job, now: dt.datetime | None = None) -> None:
    job.status = type(job).succeeded_status
    job.claimed_at = job.lease_until = None
    job.last_error = None


def finish_jobs(db, model: type, job_ids: Sequence[Any]) -> None:
    """``finish_job`` for jobs the caller has locked and still holds: one
    UPDATE."""
    if job_ids:
        db.execute(update(model).where(model.id.in_(list(job_ids)))
                   .values(status=model.succeeded_status, claimed_at=None, lease_until=None, last_error=None)
                   .execution_options(synchronize_session=False))


def fail_job(job, error: str, *, permanent: bool, backoff: Sequence[float],
             now: dt.datetime | None = None) -> dt.datetime | None:
    """Record a failure. Returns when to try again, or None when the job has
    failed for good (permanent error, or every backoff step used)."""
    now = now or utcnow()
    job.last_error = error[:2000]
    job.claimed_at = job.lease_until = None
    retry_index = job.attempts - 1
    if permanent or retry_index >= len(backoff):
        job.status = type(job).failed_status
        return None
    job.status = PENDING
    job.next_attempt_at = now + dt.timedelta(seconds=backoff[retry_index])
    return job.next_attempt_at


def postpone_job(job, until: dt.datetime, note: str) -> None:
    """Give back a claimed job that must wait (not a failure): pending again
    at ``until``, its claim's attempt not counted. ``note`` becomes
    ``last_error`` unless that records an attempt whose outcome is unknown,
    which the next attempt must still see."""
    job.status = PENDING
    job.attempts = max(job.attempts - 1, 0)
    job.next_attempt_at = until
    job.claimed_at = job.lease_until = None
    if not was_interrupted(job):
        job.last_error = note[:2000]


class NotReplayable(Exception):
    """A job named for a replay is unknown, or has not failed."""


def replay_failed(ctx, model: type, job_ids: Sequence[Any] | None, what: str,
                  order: Sequence[Any] = ()) -> list:
    """Put failed jobs of ``model`` (those named, or every failed one, in
    ``order``) back to pending with fresh attempts, their last error kept
    in words, and queue them: an operator's second chance. Raises
    NotReplayable, naming it as ``what``, for a named job that has not failed."""
    failed = model.failed_status
    if job_ids is None:
        rows = list(ctx.db.scalars(select(model).where(model.status == failed)
                                   .order_by(*(order or (model.next_attempt_at, model.id))).with_for_update()))
    else:
        rows = []
        for job_id in job_ids:
            row = ctx.db.get(model, job_id, with_for_update=True)
            if row is None:
                raise NotReplayable(f"no {what} {job_id}")
            if row.status != failed:
                raise NotReplayable(f"{what} {job_id} is {row.status}, not {failed}: nothing to replay")
            rows.append(row)
    now = utcnow()
    for row in rows:
        row.status, row.attempts, row.next_attempt_at, row.claimed_at = PENDING, 0, now, None
        row.last_error = f"replayed by an operator at {now.isoformat()}; last error: {row.last_error}"[:2000]
    ctx.db.flush()
    for row in rows:
        enqueue_job(ctx, row)
    return rows


def reap(request, now: dt.datetime | None = None) -> int:
    """Re-enqueue jobs whose task was lost or whose lease lapsed. Returns how
    many were re-enqueued. Works ``jobs.reaper_batch`` rows of a kind per
    transaction and goes on until none is left (or ``REAP_PASS_SECONDS``
    have passed); safe to run concurrently."""
    settings = request.registry.settings
    now = now or utcnow()
    lost_before = now - dt.timedelta(seconds=settings["jobs.lost_after"])
    claimed_before = now - lease_for(settings)
    limit = settings["jobs.reaper_batch"]
    deadline = time.monotonic() + REAP_PASS_SECONDS
    total = 0
    for kind in request.registry["jobs.kinds"]:
        model = kind.model
        lost = (model.status == PENDING) & (model.next_attempt_at <= lost_before)
        if kind.ready is not None:
            lost &= kind.ready(model)  # waiting for another job is not being lost
        lapsed = (model.status == RUNNING) & or_(
            model.lease_until <= now,
            # claimed before leases existed
            model.lease_until.is_(None) & (model.claimed_at <= claimed_before))
        requeued = 0
        while True:
            with request.tm:
                rows = request.db.scalars(
                    select(model)
                    .where(or_(lost, lapsed))
                    .order_by(model.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).all()
                requeued += sum(_take_back(request, kind, job, now) for job in rows)
            if len(rows) < limit or time.monotonic() > deadline:
                break
        if requeued:
            log.warning("reaper re-enqueued %d %s job(s)", requeued, model.__tablename__)
        total += requeued
    return total


def _take_back(request, kind: DurableKind, job, now: dt.datetime) -> bool:
    """Reset one job seen stuck, unless it moved on since it was read (row
    locks do not exist on SQLite, so the UPDATE itself is the guard)."""
    model = kind.model
    died = job.status == RUNNING
    gave_up = died and job.attempts >= kind.max_attempts
    values: dict[str, Any] = {"claimed_at": None, "lease_until": None}
    if gave_up:
        values.update(status=model.failed_status, last_error=f"{INTERRUPTED}; giving up")
    elif died:
        values.update(status=PENDING, next_attempt_at=now, last_error=f"{INTERRUPTED}; retrying")
    else:
        values.update(next_attempt_at=now)
    if died:  # and not renewed since it was read
        unchanged = (model.claimed_at == job.claimed_at) & (
            model.lease_until.is_(None) if job.lease_until is None else model.lease_until == job.lease_until)
    else:
        unchanged = model.next_attempt_at == job.next_attempt_at
    if not update_if(request.db, model, (model.id == job.id, model.status == job.status, unchanged), **values):
        return False
    if gave_up:
        if kind.on_give_up is not None:
            kind.on_give_up(request.db.get(model, job.id, populate_existing=True))
        return False
    enqueue(request, kind.task, job.id)
    return True


def was_interrupted(job) -> bool:
    """Whether the job's last attempt ended without a recorded outcome (its
    worker died, or stopped before the attempt finished, or what it called
    ran out of time without saying whether it acted)."""
    return (job.last_error or "").startswith((INTERRUPTED, RELEASED, OUTCOME_UNKNOWN))


class Reaper(threading.Thread):
    """Runs ``reap`` every ``jobs.reap_interval`` seconds in a worker process,
    apart from the task threads: recovery must not wait for a free worker
    thread, nor for the minute of a periodic task."""

    def __init__(self, registry):
        super().__init__(name="guestguard-reaper", daemon=True)
        self.registry = registry
        self.every = registry.settings["jobs.reap_interval"]
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                run_task_now(self.registry, reap)
            except Exception as exc:
                report = self.registry.get("db.outage")
                if report is not None and report(exc, "worker"):
                    continue
                log.exception("the reaper failed")

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(REAP_PASS_SECONDS + 5)


def start_reaper(registry) -> Reaper:
    reaper = Reaper(registry)
    reaper.start()
    registry["jobs.reaper"] = reaper
    atexit.register(reaper.stop)
    return reaper


def includeme(config) -> None:
    settings = config.get_settings()
    config.registry["huey"] = make_huey(settings)
    config.registry["huey.tasks"] = {}
    config.registry["jobs.kinds"] = []
    config.registry["jobs.held"] = HeldClaims()
    config.add_directive("add_task", add_task)
    config.add_directive("add_periodic_task", add_periodic_task)
    config.add_directive("add_durable_job", add_durable_job)
    # Worker processes also run it every jobs.reap_interval seconds (Reaper).
    config.add_periodic_task(reap, crontab(minute="*"), in_transaction=False)
