"""Background work: Huey from settings, ``enqueue`` (after commit), the task context,
durable jobs and the reaper.

Huey delivers a task at most once, so work that matters is a durable job: a
row with ``status``, ``attempts``, ``next_attempt_at`` and ``last_error``.
Its task claims the row with a conditional UPDATE (exactly one claimant wins,
on SQLite and PostgreSQL alike), acts outside the claiming transaction and
records the outcome. The reaper re-enqueues rows whose task was lost (due but
untouched past ``jobs.lost_after``) or whose worker died mid-run (claimed past
``jobs.stale_after``).
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from huey import MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer
from pyramid.scripting import prepare
from sqlalchemy import String, Text, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.audit.request_id import current_request_id
from guestguard.db import utcnow

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
REQUEST_ID_KWARG = "_gg_request_id"
JOB_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)


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


class InProcessConsumer(Consumer):
    """A consumer that runs beside the web server: its threads start without
    taking over the process's signal handlers (the server owns those)."""

    def _set_signal_handlers(self) -> None:
        pass


def start_in_process_consumer(registry) -> InProcessConsumer:
    huey: Huey = registry["huey"]
    consumer = InProcessConsumer(huey, workers=registry.settings["huey.workers"],
                                 worker_type="thread", periodic=True, check_worker_health=False,
                                 shutdown_timeout=10)
    consumer.start()
    # Let a task in progress finish when the server stops, instead of leaving
    # its job claimed until the reaper's stale_after passes.
    atexit.register(consumer.stop, graceful=True)
    registry["huey.consumer"] = consumer
    log.info("in-process task consumer started with %d thread(s)", consumer.workers)
    return consumer


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

    def run(*args: Any, **kwargs: Any) -> Any:
        request_id = kwargs.pop(REQUEST_ID_KWARG, None) or f"task-{uuid.uuid4().hex[:12]}"
        token = current_request_id.set(request_id)
        try:
            with prepare(registry=registry) as env:
                request = env["request"]
                request.request_id = request_id
                if not spec.in_transaction:
                    return spec.func(request, *args, **kwargs)
                with request.tm:
                    return spec.func(request, *args, **kwargs)
        finally:
            current_request_id.reset(token)

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
    if periodic is not None:
        wrapper = huey.periodic_task(periodic)(runner)
    else:
        wrapper = huey.task()(runner)
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

    # The task's log lines carry the id of the request that queued it.
    kwargs = {REQUEST_ID_KWARG: getattr(ctx, "request_id", None) or current_request_id.get()}

    def after_commit(committed: bool) -> None:
        if not committed:
            return
        try:
            if delay is None and eta is None:
                wrapper(*args, **kwargs)
            else:
                # Aware datetimes: Huey reads a naive one as local time.
                wrapper.schedule(args=args, kwargs=kwargs, delay=delay, eta=eta)
        except Exception:
            log.exception("could not enqueue task %s", name)

    ctx.tm.get().addAfterCommitHook(after_commit)


def run_task_now(registry, func: Callable[..., Any], *args: Any) -> Any:
    """Run a registered task synchronously in its own context (CLI, tests)."""
    return registry["huey.tasks"][task_name(func)].call_local(*args)


# --- durable jobs ------------------------------------------------------------


class DurableJobMixin:
    """Columns of a unit of work that must not be lost."""

    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


@dataclass(frozen=True)
class DurableKind:
    model: type
    task: Callable[..., Any]
    max_attempts: int
    on_give_up: Callable[[Any], None] | None


def add_durable_job(config, model: type, task: Callable[..., Any], *, max_attempts: int,
                    on_give_up: Callable[[Any], None] | None = None) -> None:
    """Config directive: let the reaper recover rows of ``model`` by
    enqueueing ``task(job_id)``. A job whose worker died ``max_attempts``
    times is failed, and ``on_give_up(job)`` tidies it (drops secrets...)."""
    config.registry["jobs.kinds"].append(DurableKind(model, task, max_attempts, on_give_up))


def job_task(registry, model: type) -> Callable[..., Any]:
    """The task registered (``add_durable_job``) to work rows of ``model``."""
    for kind in registry["jobs.kinds"]:
        if kind.model is model:
            return kind.task
    raise LookupError(f"{model.__name__} is not a durable job (use config.add_durable_job)")


def enqueue_job(ctx, job, eta: dt.datetime | None = None) -> None:
    """Queue the job's registered task for ``job`` after commit."""
    enqueue(ctx, job_task(ctx.registry, type(job)), job.id, eta=eta)


def claim_job(ctx, model: type, job_id, task: Callable[..., Any] | None = None):
    """Mark a due pending job as running and return it. None when it is
    claimed by someone else or finished; a job not yet due (the task came
    early, or this worker's clock is behind) is queued again for its time
    (by ``task``, the job's registered task unless given)."""
    db = ctx.db
    now = utcnow()
    result = db.execute(
        update(model)
        .where(model.id == job_id, model.status == PENDING, model.next_attempt_at <= now)
        .values(status=RUNNING, claimed_at=now, attempts=model.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    job = db.get(model, job_id, populate_existing=True)
    if result.rowcount == 1:
        return job
    if job is not None and job.status == PENDING and job.next_attempt_at > now:
        enqueue(ctx, task or job_task(ctx.registry, model), job_id, eta=job.next_attempt_at)
    return None


def still_claimed(job, claimed_at: dt.datetime) -> bool:
    """Whether ``job`` is still held by the claim made at ``claimed_at``: the
    reaper may have taken it back from a worker it believed dead."""
    return job.status == RUNNING and job.claimed_at == claimed_at


def finish_job(job, now: dt.datetime | None = None) -> None:
    job.status = SUCCEEDED
    job.claimed_at = None
    job.last_error = None


def fail_job(job, error: str, *, permanent: bool, backoff: Sequence[float],
             now: dt.datetime | None = None) -> dt.datetime | None:
    """Record a failure. Returns when to try again, or None when the job has
    failed for good (permanent error, or every backoff step used)."""
    now = now or utcnow()
    job.last_error = error[:2000]
    job.claimed_at = None
    retry_index = job.attempts - 1
    if permanent or retry_index >= len(backoff):
        job.status = FAILED
        return None
    job.status = PENDING
    job.next_attempt_at = now + dt.timedelta(seconds=backoff[retry_index])
    return job.next_attempt_at


def reap(request, now: dt.datetime | None = None) -> int:
    """Re-enqueue jobs whose task was lost or whose worker died. Returns how
    many were re-enqueued. Runs periodically; safe to run concurrently."""
    settings = request.registry.settings
    now = now or utcnow()
    lost_before = now - dt.timedelta(seconds=settings["jobs.lost_after"])
    stale_before = now - dt.timedelta(seconds=settings["jobs.stale_after"])
    limit = settings["jobs.reaper_batch"]
    total = 0
    for kind in request.registry["jobs.kinds"]:
        model = kind.model
        rows = request.db.scalars(
            select(model)
            .where(or_(
                (model.status == PENDING) & (model.next_attempt_at <= lost_before),
                (model.status == RUNNING) & (model.claimed_at <= stale_before),
            ))
            .order_by(model.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        requeued = sum(_take_back(request, kind, job, now) for job in rows)
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
    values: dict[str, Any] = {"claimed_at": None}
    if gave_up:
        values.update(status=FAILED, last_error="worker stopped while running this job; giving up")
    elif died:
        values.update(status=PENDING, next_attempt_at=now,
                      last_error="worker stopped while running this job; retrying")
    else:
        values.update(next_attempt_at=now)
    unchanged = (model.claimed_at == job.claimed_at) if died else (
        model.next_attempt_at == job.next_attempt_at)
    won = request.db.execute(
        update(model)
        .where(model.id == job.id, model.status == job.status, unchanged)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return False
    if gave_up:
        if kind.on_give_up is not None:
            kind.on_give_up(request.db.get(model, job.id, populate_existing=True))
        return False
    enqueue(request, kind.task, job.id)
    return True


def includeme(config) -> None:
    settings = config.get_settings()
    config.registry["huey"] = make_huey(settings)
    config.registry["huey.tasks"] = {}
    config.registry["jobs.kinds"] = []
    config.add_directive("add_task", add_task)
    config.add_directive("add_periodic_task", add_periodic_task)
    config.add_directive("add_durable_job", add_durable_job)
    config.add_periodic_task(reap, crontab(minute="*"))
