"""Group commit: the task threads of one worker process that reach the same
step at the same time (claiming their jobs, recording their outcomes) have
it done for all of them in one transaction instead of one each.

Each job keeps its own task, so a provider that hangs still holds one
message and one thread; only the short database steps are shared. A thread
hands in its item and waits. The first to arrive leads: it takes every item
handed in so far and does them together in its own transaction, gives each
thread its result, and passes the lead to a thread that arrived meanwhile
(so no thread works for the others longer than one round). A thread alone
does its item at once, as before. Each thread returns only once its own
item is committed, so a worker killed at any moment has left at most one
step per thread undone, as with one transaction per job.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from guestguard.outages import is_database_unavailable

log = logging.getLogger(__name__)


class _Ticket:
    """One thread's item, its result, and whether it was told to lead."""

    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: Any):
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False


class GroupCommit:
    """``run(ctx, item)`` returns ``work(ctx, items)[i]`` for the item, with
    the items of threads that came at the same time done in the same call.

    ``work`` does its items in one transaction of ``ctx`` and returns their
    results in order. When it raises for a group (other than the database
    being away, which would fail each alone too), each item is done again
    alone, so one bad item holds back no other."""

    def __init__(self, name: str, work: Callable[[Any, Sequence[Any]], Sequence[Any]]):
        self.name = name
        self.work = work
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: list[_Ticket] = []
        self._leading = False
        # A thread doing a group whose commit runs a task at once (Huey's
        # immediate mode) that comes back here does that item alone.
        self._inside = threading.local()
        # Items done and groups done (the tests read them).
        self.items = self.groups = 0

    def run(self, ctx, item: Any) -> Any:
        if getattr(self._inside, "active", False):
            return self._work(ctx, [item])[0]
        ticket = _Ticket(item)
        with self._lock:
            self._waiting.append(ticket)
            lead = not self._leading
            self._leading = True
            while not lead and not ticket.done and not ticket.lead:
                self._wake.wait()
            lead = ticket.lead or lead
        if lead and not ticket.done:
            self._lead(ctx)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _lead(self, ctx) -> None:
        with self._lock:
            group, self._waiting = self._waiting, []
        try:
            self._do(ctx, group)
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                else:
                    self._leading = False
                self._wake.notify_all()

    def _do(self, ctx, group: list[_Ticket]) -> None:
        try:
            self._do_group(ctx, group)
        finally:
            # Whatever stopped the leading thread (a signal in a retry, a
            # wrong count of results), no one is left waiting for it.
            for ticket in group:
                if not ticket.done:
                    ticket.error = ticket.error or RuntimeError(f"{self.name}: the thread doing the group stopped")
                    ticket.done = True

    def _do_group(self, ctx, group: list[_Ticket]) -> None:
        try:
            results = self._work(ctx, [ticket.item for ticket in group])
        except Exception as exc:
            if len(group) == 1 or is_database_unavailable(exc):
                for ticket in group:
                    ticket.error, ticket.done = exc, True
                return
            log.warning("%s: a group of %d failed (%s); doing each alone", self.name, len(group),
                        type(exc).__name__)
            for ticket in group:
                try:
                    ticket.result = self._work(ctx, [ticket.item])[0]
                except Exception as alone:
                    ticket.error = alone
                ticket.done = True
            return
        for ticket, result in zip(group, results, strict=True):
            ticket.result, ticket.done = result, True

    def _work(self, ctx, items: list[Any]) -> Sequence[Any]:
        outer = getattr(self._inside, "active", False)
        self._inside.active = True
        try:
            results = self.work(ctx, items)
        finally:
            self._inside.active = outer
        with self._lock:
            self.items += len(items)
            self.groups += 1
        return results
