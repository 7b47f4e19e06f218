"""What hosts made of the flags: per rule, how many they dismissed
(harmless) and how many they confirmed by revoking and reissuing the link,
and so each rule's precision as the hosts judged it
(``guestguard guard report``; ``guard_flag_reviews_total`` counts the same
as it happens)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from prometheus_client import Counter
from sqlalchemy import func, select

from guestguard.guard.models import FLAG_DISMISSED, FLAG_OPEN, FLAG_RESOLVED, Flag

REVIEWS = Counter("guard_flag_reviews_total", "Flags the hosts reviewed, by rule and verdict (dismissed: "
                  "harmless; resolved: the link was revoked and reissued).", ["rule", "verdict"])


@dataclasses.dataclass(frozen=True)
class RuleFeedback:
    rule: str
    open: int
    dismissed: int
    resolved: int

    @property
    def raised(self) -> int:
        return self.open + self.dismissed + self.resolved

    @property
    def precision(self) -> float | None:
        """Confirmed among reviewed; None before any review."""
        reviewed = self.dismissed + self.resolved
        return self.resolved / reviewed if reviewed else None


def rule_feedback(db, *, since: dt.datetime | None = None,
                  workspace_id: uuid.UUID | None = None) -> list[RuleFeedback]:
    """Each rule's flags raised since ``since`` (in one workspace, or all),
    by what the hosts did with them; one query."""
    query = select(Flag.rule, Flag.status, func.count()).group_by(Flag.rule, Flag.status)
    if since is not None:
        query = query.where(Flag.created_at >= since)
    if workspace_id is not None:
        query = query.where(Flag.workspace_id == workspace_id)
    counts: dict[str, dict[str, int]] = {}
    for rule, status, count in db.execute(query):
        counts.setdefault(rule, {})[status] = count
    return [RuleFeedback(rule, by.get(FLAG_OPEN, 0), by.get(FLAG_DISMISSED, 0), by.get(FLAG_RESOLVED, 0))
            for rule, by in sorted(counts.items())]


def report(feedback: list[RuleFeedback]) -> str:
    if not feedback:
        return "no flags raised in this period"
    head = ("rule", "raised", "open", "dismissed", "confirmed", "precision")
    rows = [(f.rule, str(f.raised), str(f.open), str(f.dismissed), str(f.resolved),
             "-" if f.precision is None else f"{f.precision:.2f}") for f in feedback]
    return text_table(head, rows)


def text_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Plain-text columns: the first left-aligned, the others right."""
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
                     for row in [head, *rows])
