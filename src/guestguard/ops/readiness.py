"""Checks behind ``/readyz``: each returns None when healthy or a short reason."""
from __future__ import annotations

import ast
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from guestguard.db import default_migrations_dir

log = logging.getLogger(__name__)


class SchemaNotMigrated(Exception):
    """The database answers but its schema is not at this code's revision."""


def _revisions_of(script: Path) -> tuple[str | None, tuple[str, ...]]:
    """A migration's ``revision`` and what it revises (``down_revision``: None,
    one id, or several for a merge), read from its module-level assignments."""
    found: dict[str, object] = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = ast.literal_eval(node.value)
    down = found.get("down_revision")
    downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    revision = found.get("revision")
    return (revision if isinstance(revision, str) else None), downs


@functools.cache
def expected_revisions(versions: Path | None = None) -> frozenset[str]:
    """The head revisions of this code's migrations: those no other one
    revises. Read from the scripts' text rather than through Alembic, whose
    import (with Mako and Pygments) would cost every web worker about 10 MiB
    for a check that needs two names per file."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (versions or default_migrations_dir() / "versions").glob("*.py"):
        revision, downs = _revisions_of(script)
        if revision is not None:
            revisions.add(revision)
            revised.update(downs)
    return frozenset(revisions - revised)


def check_database(registry) -> None:
    with registry["db.engine"].connect() as connection:
        try:
            current = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except DBAPIError as exc:
            if "alembic_version" in str(exc.orig):
                raise SchemaNotMigrated("not migrated: run guestguard migrate") from None
            raise
    if current != expected_revisions():
        raise SchemaNotMigrated("not migrated to the latest revision: run guestguard migrate")


def check_queue(registry) -> None:
    huey = registry["huey"]
    huey.storage.queue_size()
    consumer = registry.get("huey.consumer")
    if consumer is not None:
        threads = [consumer.scheduler] + [proc for _, proc in consumer.worker_threads]
        if not all(thread.is_alive() for thread in threads):
            raise RuntimeError("in-process worker threads are not running")


def check_redis(registry) -> None:
    client = redis.Redis.from_url(registry.settings["redis.url"], socket_timeout=2,
                                  socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def checks_for(registry) -> dict[str, Callable]:
    checks = {"database": check_database, "queue": check_queue}
    if registry.settings["redis.url"]:
        checks["redis"] = check_redis
    return checks


def run_checks(registry) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks_for(registry).items():
        try:
            check(registry)
            results[name] = "ok"
        except Exception as exc:
            # The class name says what failed without echoing connection
            # strings (which may hold credentials) into a public response.
            log.warning("readiness check %s failed: %r", name, exc)
            reason = str(exc) if isinstance(exc, SchemaNotMigrated) else type(exc).__name__
            results[name] = f"failed: {reason}"
    return all(value == "ok" for value in results.values()), results
