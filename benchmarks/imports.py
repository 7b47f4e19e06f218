"""Guest lists from spreadsheets: a 5,000-row file through the preview and
the import, in process through the whole stack (multipart body, importer,
header and mapping, the guest checks, duplicates, one transaction), against
a floor measured in the same run: the same file parsed by the standard
library's ``csv`` (or python-calamine, the fastest reader, for the .xlsx) plus one
bulk INSERT of the same 5,000 guests. Also the memory a preview and an
import add (tracemalloc's peak). On PostgreSQL (a database made for the
run) when one answers on 127.0.0.1, else on SQLite; nothing is asserted.

Run alone: ``python -m benchmarks.imports``."""
from __future__ import annotations

import contextlib
import csv
import io
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import openpyxl
import python_calamine
import webtest
from sqlalchemy import insert

from guestguard import make_config
from guestguard.events.models import Guest
from guestguard.testing import TEST_PASSWORD, create_team, in_request, migrate

from benchmarks.events import PG_SERVER, admin

ROWS = 5000
REPEAT = 5


def guest_rows(count: int = ROWS) -> list[list[str]]:
    rows = [["Full name", "E-mail address", "Mobile", "+1", "Group", "Notes"]]
    for n in range(count):
        rows.append([f"Guest Number {n:05}", f"guest{n}@example.com", f"+44 7911 {100000 + n:06}", str(n % 3),
                     ("Family", "Work", "Friends")[n % 3], "Vegetarian" if n % 7 == 0 else ""])
    return rows


def csv_file(rows) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def xlsx_file(rows) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Guests")
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@contextlib.contextmanager
def database():
    """A PostgreSQL database for the run, else a SQLite file. Yields (label, url)."""
    name = f"guestguard_bench_imports_{uuid.uuid4().hex[:8]}"
    try:
        admin(f"CREATE DATABASE {name}")
    except Exception as exc:  # no PostgreSQL here: SQLite
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'imports.sqlite'}"
            migrate(url)
            yield f"SQLite (no PostgreSQL: {type(exc).__name__})", url
        return
    try:
        url = f"{PG_SERVER}/{name}"
        migrate(url)
        yield "PostgreSQL", url
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def app_for(url: str) -> webtest.TestApp:
    config = make_config({
        "app.env": "test", "db.url": url, "huey.url": "memory://", "huey.immediate": "true",
        "log.level": "WARNING", "ratelimit.enabled": "false", "passwords.memory_kib": "19456",
        "billing.enforce": "false", "passwords.time_cost": "2", "passwords.parallelism": "1"}, environ={})
    return webtest.TestApp(config.make_wsgi_app())


def floor(registry, event_id: uuid.UUID, workspace_id: uuid.UUID, data: bytes, fmt: str) -> float:
    """Parse with the bare reader, insert the guests in one statement."""
    start = time.perf_counter()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))[1:]
    else:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        rows = [[str(cell) for cell in row] for row in book.get_sheet_by_index(0).iter_rows()][1:]
        book.close()
    values = [{"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event_id, "name": row[0],
               "email": row[1], "phone": row[2].replace(" ", ""), "plus_ones_allowed": int(row[3]),
               "group_name": row[4], "notes": row[5], "tags": [], "plus_ones_coming": 0, "open_flags": 0}
              for row in rows]
    in_request(registry, lambda request: request.db.execute(insert(Guest), values))
    return time.perf_counter() - start


def new_event(app, headers, workspace_id) -> str:
    return app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Bench",
                                            "starts_at": "2031-01-01T18:00:00", "timezone": "UTC"},
                         headers=headers).json["event"]["id"]


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peak_memory(call) -> int:
    """What ``call`` allocates at its peak (traced apart from the timed runs:
    tracing slows Python down several times)."""
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def run() -> None:
    rows = guest_rows()
    files = {"csv": csv_file(rows), "xlsx": xlsx_file(rows)}
    with database() as (label, url):
        app = app_for(url)
        registry = app.app.registry
        workspace_id = in_request(registry, create_team)
        token = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        print(f"guest-list import: {ROWS:,}-row files ({len(files['csv']):,} bytes CSV, "
              f"{len(files['xlsx']):,} bytes XLSX), {label}, median of {REPEAT}")
        print("| file | floor (parse + one bulk insert) | preview | × floor | import | × floor | "
              "preview peak memory | import peak memory |")
        print("|---|---|---|---|---|---|---|---|")
        for fmt, data in files.items():
            floors, previews, commits = [], [], []

            def calls(event_id, fmt=fmt, data=data):
                path = f"/api/v1/events/{event_id}/guests/import"
                upload = [("file", f"guests.{fmt}", data)]
                return (lambda: app.post(f"{path}/preview", upload_files=upload, headers=headers),
                        lambda: app.post(path, upload_files=upload, headers=headers, status=201))

            for _ in range(REPEAT):
                event_id = new_event(app, headers, workspace_id)
                floors.append(floor(registry, uuid.UUID(event_id), uuid.UUID(workspace_id), data, fmt))
                preview, commit = calls(new_event(app, headers, workspace_id))
                previews.append(seconds(preview))
                commits.append(seconds(commit))
            preview, commit = calls(new_event(app, headers, workspace_id))
            preview_memory, commit_memory = peak_memory(preview), peak_memory(commit)
            base = statistics.median(floors)
            preview_time, commit_time = statistics.median(previews), statistics.median(commits)
            print(f"| {fmt} | {base * 1000:.0f} ms | {preview_time * 1000:.0f} ms | {preview_time / base:.1f}× | "
                  f"{commit_time * 1000:.0f} ms | {commit_time / base:.1f}× | {preview_memory / 2**20:.0f} MB | "
                  f"{commit_memory / 2**20:.0f} MB |")
        registry["db.engine"].dispose()


def main() -> None:
    run()


if __name__ == "__main__":
    main()
