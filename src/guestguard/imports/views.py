"""The host's page "Import guests from a spreadsheet": choose or drop a
file, see the preview (mapping dropdowns above the columns, errors next to
the cell), import, then the summary with the error rows and an undo. Plain
form posts; ``static/import.js`` only adds dropping a file on the zone."""
from __future__ import annotations

import uuid

from pydantic import ValidationError
from pyramid.view import view_config

from guestguard.events.views import event_page_base
from guestguard.imports import services
from guestguard.imports.api import choices_of, preview_answer
from guestguard.imports.models import IMPORTED
from guestguard.imports.reading import FIELDS, ImportError_
from guestguard.imports.schemas import DELIMITERS, ImportChoices
from guestguard.permissions import GUESTS_EDIT, GUESTS_EXPORT, granted
from guestguard.ratelimit import enforce
from guestguard.validation import field_errors
from guestguard.web import flash, redirect

PAGE = "imports/page.jinja2"
ENCODINGS = (("", "Detect"), ("utf-8", "UTF-8"), ("utf-16", "UTF-16"), ("cp1252", "Windows-1252 (Western)"),
             ("iso8859-15", "ISO 8859-15"), ("mac-roman", "Mac Roman"), ("cp1250", "Windows-1250 (Central European)"))


def page(request, context, status: int = 200, **extra) -> dict:
    allowed = granted(request.identity, context.workspace_id)
    return event_page_base(request, context, status, fields=FIELDS, labels=services.LABELS, encodings=ENCODINGS,
                           delimiters=(("", "Detect"), *((name, name.capitalize()) for name in DELIMITERS)),
                           can_export=GUESTS_EXPORT in allowed,
                           imports=services.recent_imports(request.db, context.event.id),
                           **{"preview": None, "problem": None, "encoding": "", "delimiter": "", **extra})


def choices_from_form(request, columns: int) -> ImportChoices:
    """The form's choices: ``map-<n>`` selects become the mapping."""
    mapping = {str(index + 1): request.POST[f"map-{index}"] for index in range(columns)
               if f"map-{index}" in request.POST}
    raw = {name: request.POST.get(name, "") or None for name in ("encoding", "delimiter")}
    raw["duplicates"] = request.POST.get("duplicates") or "skip"
    return ImportChoices.model_validate({**raw, "mapping": mapping or None})


@view_config(route_name="event_import", request_method="GET", permission=GUESTS_EDIT, renderer=PAGE)
def import_page(context, request):
    return page(request, context)


@view_config(route_name="event_import", request_method="POST", permission=GUESTS_EDIT, renderer=PAGE)
def preview_page(context, request):
    """A file chosen (or dropped), or the preview's choices changed."""
    event = context.event
    part = request.POST.get("file")
    kept = _kept(request, context)
    try:
        choices = choices_from_form(request, len(kept.mapping) if kept is not None and not hasattr(part, "file")
                                    else 0)
    except ValidationError as exc:
        return page(request, context, 400, problem="; ".join(f"{k}: {v}" for k, v in field_errors(exc).items()))
    if hasattr(part, "file"):
        limit = request.registry.settings["imports.max_file_bytes"]
        upload = services.Upload((part.filename or "upload").strip()[:255] or "upload", part.file.read(limit + 1))
    elif kept is not None and kept.content is not None:
        upload = services.Upload(kept.file_name, kept.content)
    else:
        return page(request, context, 400, problem="Choose a file to import: a CSV, TSV, text or Excel file.")
    enforce(request, "guest_import")
    try:
        imp, checked = services.preview(request.ctx, event, upload, choices_of(choices))
    except ImportError_ as error:
        return page(request, context, error.status if error.status < 500 else 400, problem=error.message)
    earlier = services.earlier_import(request.db, event, imp.file_sha256)
    return page(request, context, preview=preview_answer(imp, checked, earlier), encoding=choices.encoding or "",
                delimiter=request.POST.get("delimiter", ""))


def _kept(request, context):
    raw = request.POST.get("import_id", "")
    try:
        import_id = uuid.UUID(raw)
    except ValueError:
        return None
    return services.find_import(request.db, context.event.id, import_id)


@view_config(route_name="event_import_commit", request_method="POST", permission=GUESTS_EDIT, renderer=PAGE)
def commit_page(context, request):
    event = context.event
    kept = _kept(request, context)
    if kept is None:
        return page(request, context, 400, problem="This preview no longer exists; choose the file again.")
    enforce(request, "guest_import")
    try:
        imp, _ = services.commit(request.ctx, event, import_id=kept.id)
    except services.ImportedAlready as repeat:
        # A double click: the first submit imported it; show its summary.
        return redirect(request, request.route_path("event_import_done", event_id=event.id, import_id=repeat.imp.id))
    except ImportError_ as error:
        return page(request, context, error.status if error.status < 500 else 400, problem=error.message)
    return redirect(request, request.route_path("event_import_done", event_id=event.id, import_id=imp.id))


@view_config(route_name="event_import_done", request_method="GET", permission=GUESTS_EDIT,
             renderer="imports/done.jinja2")
def done_page(context, request):
    imp = context.record
    return event_page_base(request, context, imp=imp, summary=summary(imp), imported=imp.status == IMPORTED,
                           has_file=imp.content is not None)


@view_config(route_name="event_import_undo", request_method="POST", permission=GUESTS_EDIT,
             renderer="imports/done.jinja2")
def undo_page(context, request):
    imp = context.record
    try:
        services.undo(request.ctx, context.event, imp)
    except ImportError_ as error:
        return event_page_base(request, context, 409, imp=imp, summary=summary(imp), imported=imp.status == IMPORTED,
                               has_file=imp.content is not None, problem=error.message)
    flash(request, f"The import of {imp.file_name} was undone: its {imp.added} guests were removed"
                   + (f" and {imp.updated} restored." if imp.updated else "."))
    return redirect(request, request.route_path("event_page", event_id=context.event.id))


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def summary(imp) -> str:
    """"Imported 247 guests. Skipped 3 duplicates. 2 rows had errors." """
    parts = [f"Imported {plural(imp.added, 'guest', 'guests')}."]
    if imp.updated:
        parts.append(f"Updated {plural(imp.updated, 'guest', 'guests')}.")
    if imp.skipped:
        parts.append(f"Skipped {plural(imp.skipped, 'duplicate', 'duplicates')}.")
    if imp.errors:
        parts.append(f"{plural(imp.errors, 'row', 'rows')} had errors.")
    return " ".join(parts)
