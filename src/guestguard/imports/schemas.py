"""Input and answers of the guest-list import and export."""
from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from guestguard.contract import Out
from guestguard.validation import Input, OneOf, Query, house_error

DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
DELIMITER_NAMES = {char: name for name, char in DELIMITERS.items()}


def _mapping(value: Any) -> Any:
    """A JSON object {column: field} (column: its letter, number or header)."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            found = json.loads(value)
        except ValueError:
            raise house_error('must be a JSON object like {"E-mail address": "email", "C": ""}') from None
        if isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
            if len(found) > 200:
                raise house_error("must name at most 200 columns")
            return found
    raise house_error('must be a JSON object like {"E-mail address": "email", "C": ""}')


def _delimiter(value: Any) -> Any:
    if isinstance(value, str) and value in DELIMITERS:
        return DELIMITERS[value]
    if value in ("", None):
        return None
    return value


Mapping = Annotated[dict[str, str] | None, BeforeValidator(_mapping)]


class ImportChoices(Input):
    """How to read the file; everything is detected when left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"mapping": '{"E-mail address": "email", "Cell": "phone"}', "duplicates": "skip"}]})

    mapping: Annotated[Mapping, Field(description="A JSON object: column (letter, number or header) -> guest "
                                                  "field (name, first_name, last_name, email, phone, "
                                                  "plus_ones, group, tags, notes; empty to ignore it).")] = None
    encoding: Annotated[str, StringConstraints(max_length=40)] | None = None
    delimiter: Annotated[Literal[",", ";", "\t", "|"] | None, BeforeValidator(_delimiter)] = None
    duplicates: Literal["skip", "update"] = "skip"


class ImportInput(ImportChoices):
    """The file again, or the ``import_id`` of its preview."""

    import_id: uuid.UUID | None = None


class ExportQuery(Query):
    format: OneOf("csv", "xlsx") = "csv"


class ImportFileOut(Out):
    name: str
    size: int
    format: str
    encoding: str
    delimiter: str
    sheet: str
    header_row: int


class ImportColumnOut(Out):
    column: str
    header: str
    field: str
    guessed: bool


class ImportRowOut(Out):
    row: int
    status: Literal["ok", "duplicate", "error"]
    values: dict[str, Any]
    errors: dict[str, str]
    duplicate_of: dict[str, Any] | None


class ImportTotals(Out):
    rows: int
    ok: int
    duplicates: int
    errors: int
    to_add: int
    to_update: int
    to_skip: int


class ImportPreview(Out):
    import_id: uuid.UUID
    file: ImportFileOut
    columns: list[ImportColumnOut]
    ignored_columns: list[str]
    rows: list[ImportRowOut]
    totals: ImportTotals
    duplicates: str
    earlier_import_id: uuid.UUID | None


class RowError(Out):
    row: int
    reason: str


class ImportResult(Out):
    import_id: uuid.UUID
    added: int
    updated: int
    skipped: int
    errors: list[RowError]
