"""What a web worker does not load: Alembic (with Mako and Pygments) is for
migrations, not for serving; readiness finds the code's head revisions
without it. Libraries of rare requests wait for their first use, and each
worker caps glibc's malloc arenas."""
from __future__ import annotations

import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

from alembic.script import ScriptDirectory

from guestguard.db import default_migrations_dir
from guestguard.ops.readiness import expected_revisions


def test_the_head_revisions_are_alembics_own():
    assert expected_revisions() == frozenset(ScriptDirectory(str(default_migrations_dir())).get_heads())


def test_a_merge_and_a_branch_are_read_as_alembic_reads_them(tmp_path):
    scripts = {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": "revision: str = 'b'\ndown_revision = 'a'\n",
        "c.py": 'revision = "c"\ndown_revision = "a"\n',
        "d.py": 'revision = "d"\ndown_revision = ("b", "c")\n',
        "e.py": 'revision = "e"\ndown_revision = "d"\nbranch_labels = None\n',
        "f.py": 'revision = "f"\ndown_revision = "d"\n',
    }
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    assert expected_revisions(tmp_path) == frozenset({"e", "f"})


# Migration tooling (readiness reads the revisions from the scripts' text),
# and what only a rare request needs: the calendar file, the XLSX export.
IMPORTED_ONLY_WHEN_USED = ("alembic", "mako", "pygments", "icalendar", "openpyxl")


def test_building_the_web_app_imports_no_migration_tooling_nor_what_rare_requests_need(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from guestguard import make_config
        make_config({{"db.url": "sqlite:///{tmp_path / 'w.sqlite'}", "huey.url": "memory://",
                      "app.env": "test"}}).make_wsgi_app()
        print(sorted(name for name in {IMPORTED_ONLY_WHEN_USED!r} if name in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_web_worker_caps_its_malloc_arenas(monkeypatch):
    """gunicorn.conf.py's ``post_fork``: glibc takes the cap (2, or
    ``MALLOC_ARENA_MAX``); a refused one is logged."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
    warned = []
    config["post_fork"](SimpleNamespace(log=SimpleNamespace(warning=lambda *args: warned.append(args))), None)
    assert config["MALLOC_ARENAS"] == 3
    assert warned == []
