"""The import and export API: preview a file, import it (or its preview),
undo an import, download the template, the error rows and the guest list."""
from __future__ import annotations

import csv
import io

from pyramid.httpexceptions import HTTPNoContent
from pyramid.response import Response
from pyramid.view import view_config

from guestguard.contract import Multipart, Refused, Stream
from guestguard.errors import APIError
from guestguard.imports import services
from guestguard.imports.reading import IGNORE
from guestguard.imports.schemas import (
    DELIMITER_NAMES,
    ExportQuery,
    ImportChoices,
    ImportColumnOut,
    ImportFileOut,
    ImportInput,
    ImportPreview,
    ImportResult,
    ImportRowOut,
    ImportTotals,
    RowError,
)
from guestguard.permissions import GUESTS_EDIT, GUESTS_EXPORT

FILE_LIMIT = "imports.max_file_bytes"
PREVIEW_BODY = Multipart(ImportChoices, FILE_LIMIT)
IMPORT_BODY = Multipart(ImportInput, FILE_LIMIT, file_required=False)
UNREADABLE = Refused("unsupported_format", "unreadable_file", "mixed_encodings", "bad_encoding",
                     "unterminated_quote", "cell_too_long", "empty_file", "no_rows", "too_many_rows",
                     "too_many_columns", "zip_bomb", "validation_failed")
CSV = "text/csv; charset=utf-8"
EXPORT_TYPES = ("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def choices_of(data: ImportChoices) -> services.Choices:
    return services.Choices(mapping=data.mapping, encoding=data.encoding, delimiter=data.delimiter,
                            duplicates=data.duplicates)


def preview_answer(imp, checked: services.Checked, earlier) -> ImportPreview:
    sheet = checked.sheet
    shown = []
    for row in checked.rows:
        values = dict(row.stored) if row.status != services.ERROR else dict(row.values)
        if "group_name" in values:
            values["group"] = values.pop("group_name")
        shown.append(ImportRowOut(row=row.number, status=row.status, values=values, errors=row.errors,
                                  duplicate_of=row.duplicate_of))
    return ImportPreview(
        import_id=imp.id,
        file=ImportFileOut(name=imp.file_name, size=imp.file_size, format=sheet.format, encoding=sheet.encoding,
                           delimiter=DELIMITER_NAMES.get(sheet.delimiter, sheet.delimiter), sheet=sheet.sheet,
                           header_row=sheet.header_number),
        columns=[ImportColumnOut(column=c.letter, header=c.header, field=c.field, guessed=c.guessed)
                 for c in sheet.columns],
        ignored_columns=[c.header or c.letter for c in sheet.columns if c.field == IGNORE],
        rows=shown,
        totals=ImportTotals(rows=len(checked.rows), ok=checked.count(services.OK),
                            duplicates=checked.count(services.DUPLICATE), errors=checked.count(services.ERROR),
                            to_add=len(checked.to_add), to_update=len(checked.to_update),
                            to_skip=checked.count(services.DUPLICATE) - len(checked.to_update)),
        duplicates=checked.duplicates, earlier_import_id=earlier.id if earlier is not None else None)


def result_answer(imp, checked: services.Checked) -> ImportResult:
    return ImportResult(import_id=imp.id, added=imp.added, updated=imp.updated, skipped=imp.skipped,
                        errors=[RowError(row=row.number, reason=row.reason) for row in checked.rows
                                if row.status == services.ERROR])


def csv_file(rows, file_name: str) -> Response:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return download(out.getvalue().encode("utf-8"), CSV, file_name)


def download(body: bytes, media_type: str, file_name: str) -> Response:
    response = Response(body=body, content_type=media_type.split(";", maxsplit=1)[0],
                        charset="utf-8" if "charset" in media_type else None)
    response.content_disposition = f'attachment; filename="{file_name}"'
    response.cache_control = "no-store"
    return response


@view_config(route_name="api_guest_import_preview", request_method="POST", renderer="json",
             permission=GUESTS_EDIT, rate_limit="guest_import", body=PREVIEW_BODY,
             response={200: ImportPreview, 422: UNREADABLE})
def preview_import(context, request):
    """Preview a guest-list file: every row with its status, nothing added.

    multipart/form-data: `file` (CSV, TSV, TXT or XLSX, at most `imports.max_file_bytes`), and optionally
    `mapping`, `encoding`, `delimiter`, `duplicates`. The answer's `import_id` pins this file and how it
    is read: import it with `POST …/guests/import` and `import_id`."""
    data = request.body_input
    upload = services.Upload(data.file.name, data.file.data)
    imp, checked = services.preview(request.ctx, context.event, upload, choices_of(data.fields))
    earlier = services.earlier_import(request.db, context.event, imp.file_sha256)
    return preview_answer(imp, checked, earlier)


@view_config(route_name="api_guest_import", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="guest_import", body=IMPORT_BODY,
             response={201: ImportResult, 402: Refused("plan_limit"), 404: Refused("not_found"),
                       409: Refused("already_imported"),
                       422: Refused("nothing_to_import", "preview_expired", *UNREADABLE.codes)})
def import_guests(context, request):
    """Import a guest-list file, or the preview named by `import_id`: valid rows are added (duplicates skipped
    or updated), all of them or none; rows with errors are reported with their row number and left out.

    A file or preview already imported into the event is refused (409 `already_imported`), so a repeated
    submit adds nobody twice."""
    data = request.body_input
    fields = data.fields
    if fields.import_id is not None and data.file is not None:
        raise APIError(422, "validation_failed", "Send the file or the import_id of its preview, not both.",
                       fields={"import_id": "cannot come with a file"})
    if fields.import_id is None and data.file is None:
        raise APIError(422, "validation_failed", "Attach the file, or send the import_id of its preview.",
                       fields={"file": "is required without import_id"})
    upload = services.Upload(data.file.name, data.file.data) if data.file is not None else None
    imp, checked = services.commit(request.ctx, context.event, import_id=fields.import_id, upload=upload,
                                   choices=choices_of(fields))
    return result_answer(imp, checked)


@view_config(route_name="api_import", request_method="DELETE", permission=GUESTS_EDIT,
             response={204: None, 409: Refused("not_undoable", "already_invited")})
def undo_import(context, request):
    """Undo an import: the guests it added are removed and those it updated restored, while none of them
    has been invited."""
    services.undo(request.ctx, context.event, context.record)
    return HTTPNoContent()


@view_config(route_name="api_guest_import_template", request_method="GET", permission=GUESTS_EDIT,
             response={200: Stream("text/csv", "A CSV file with the columns an import reads and two example rows.")})
def import_template(context, request):
    """The import template: a CSV file with the headers and two example rows."""
    return csv_file(services.TEMPLATE_ROWS, "guest-list-template.csv")


@view_config(route_name="api_import_errors", request_method="GET", permission=GUESTS_EDIT,
             response={200: Stream("text/csv", "The rows with errors as the file had them, each with its "
                                               "row number and problem."), 410: Refused("expired")})
def import_errors(context, request):
    """The rows of an import that had errors, as CSV, to fix and import again."""
    rows = services.error_rows_of(request.ctx, context.event, context.record)
    return csv_file(rows, "rows-with-errors.csv")


@view_config(route_name="api_guest_export", request_method="GET", permission=GUESTS_EXPORT, query=ExportQuery,
             response={200: Stream(EXPORT_TYPES, "The guest list as CSV or Excel, as `format` asks.")})
def export_guests(context, request):
    """The guest list with answers, plus-ones, dietary notes, invitation and delivery state, as CSV or Excel.

    Cells starting with `=`, `+`, `-` or `@` get a leading apostrophe, so no spreadsheet runs them as
    formulas; the file imports back as it is."""
    writer = services.exporter(request.registry, request.query_input.format)
    # A replica's lag of a few seconds is harmless in a download.
    body = writer.write(services.export_rows(request.replica_db, context.event))
    return download(body, writer.media_type, f"guests.{request.query_input.format}")
