"""The data map: which columns look personal, and which of them no privacy
job claims. A column looks personal when a word of its name is one people's
data hides behind; an ``*_id`` column only when it points at a person (the
user who acted, invited, issued)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, MetaData

from guestguard.plugins import PersonalData, PrivacyJob

# Words of a column's name that mean it may hold someone's data.
PERSONAL_WORDS = frozenset({
    "email", "phone", "name", "names", "ip", "agent", "network", "device", "address", "recipient",
    "message", "notes", "note", "body", "summary", "details", "detail", "evidence", "context",
    "content", "data", "answers", "dietary", "description", "venue", "reply", "tags", "headers",
    "caller", "updates", "mapping", "display",
})
# Words of an ``*_id`` column's name that make it a reference to a person.
PERSON_REFERENCES = frozenset({"user", "actor", "by"})


def looks_personal(column: Column) -> bool:
    """Whether a column's name and type say it may hold someone's data
    (flags, counts and times cannot)."""
    stored = getattr(column.type, "impl_instance", column.type)  # a TypeDecorator's own type
    try:
        kind = stored.python_type
    except NotImplementedError:
        kind = None
    if kind in (bool, int, dt.datetime, dt.date):
        return False
    words = column.name.lower().split("_")
    if words[-1] == "id":
        return bool(PERSON_REFERENCES & set(words[:-1]))
    return bool(PERSONAL_WORDS & set(words))


@dataclass(frozen=True)
class Claim:
    job: str
    data: PersonalData


def claims(jobs: Iterable[PrivacyJob]) -> dict[tuple[str, str], Claim]:
    """(table, column) -> the job and declaration that claim it."""
    found: dict[tuple[str, str], Claim] = {}
    for job in jobs:
        for data in job.data:
            for column in data.columns:
                found.setdefault((data.table, column), Claim(job.name, data))
    return found


def unclaimed(metadata: MetaData, jobs: Sequence[PrivacyJob]) -> list[str]:
    """``table.column`` for every personal-looking column no job claims."""
    claimed = set(claims(jobs))
    claimed |= {tuple(name.split(".", 1)) for job in jobs for name in job.not_personal}
    return sorted(f"{table.name}.{column.name}" for table in metadata.sorted_tables
                  for column in table.columns
                  if looks_personal(column) and (table.name, column.name) not in claimed)


def unknown_claims(metadata: MetaData, jobs: Sequence[PrivacyJob]) -> list[str]:
    """Claims naming a table or column the models do not have (a typo, or a
    column since renamed): the map must describe what is stored."""
    present = {f"{table.name}.{column.name}" for table in metadata.sorted_tables for column in table.columns}
    named = [(claim.job, f"{table}.{column}") for (table, column), claim in claims(jobs).items()]
    named += [(job.name, name) for job in jobs for name in job.not_personal]
    return sorted(f"{job}: {name}" for job, name in named if name not in present)
