"""What a web worker does not load: Alembic (with Mako and Pygments) is for
migrations, not for serving; readiness finds the code's head revisions
without it. Libraries of rare requests, and the providers' SDKs (Stripe,
boto3 for SES, Twilio), wait for their first use, and each worker caps
glibc's malloc arenas."""
from __future__ import annotations

import ast
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
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
# what only a rare request needs (the calendar file, the XLSX export, a
# cover upload, a camera frame decoded on the server, a file imported), and
# the providers' SDKs: the task worker sends, and Stripe is called only by
# the billing pages. Babel: the 12-hour countries are a table (timefmt).
# cryptography's Rust core (PyJWT imports it, and Fernet and the SNS
# signature checks need it) waits for the first API token, sealed message
# or SNS message; ``import cryptography`` alone (redis-py's probe) loads no
# more than its version. phonenumbers waits for the first phone number read,
# segno for the first QR code drawn.
IMPORTED_ONLY_WHEN_USED = ("alembic", "mako", "pygments", "icalendar", "openpyxl", "PIL", "zxingcpp", "babel",
                           "charset_normalizer", "python_calamine",
                           "stripe", "boto3", "botocore", "twilio", "requests",
                           "jwt", "cryptography.hazmat.bindings._rust", "cryptography.fernet", "cryptography.x509",
                           "phonenumbers", "segno")
# Each provider chosen, so its plugin checks its settings at startup.
PROVIDERS_CHOSEN = {
    "billing.backend": "stripe", "stripe.secret_key": "sk_test_memory",
    "notifications.email.provider": "ses",
    "notifications.sms.provider": "twilio", "twilio.account_sid": "AC" + "0" * 32,
    "twilio.auth_token": "token", "twilio.from_number": "+14155550100",
    "twilio.public_base_url": "https://guestguard.example",
}


def modules_after_building(settings: dict) -> tuple[list[str], list[str]]:
    """In a fresh process: which of IMPORTED_ONLY_WHEN_USED building the web
    app imported, and the paths of its routes."""
    code = textwrap.dedent(f"""
        import sys
        from pyramid.interfaces import IRoutesMapper
        from guestguard import make_config
        app = make_config({settings!r}).make_wsgi_app()
        print(sorted(name for name in {IMPORTED_ONLY_WHEN_USED!r} if name in sys.modules))
        print(sorted(route.pattern for route in app.registry.getUtility(IRoutesMapper).get_routes()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    imported, routes = out.strip().splitlines()[-2:]
    return ast.literal_eval(imported), ast.literal_eval(routes)


def test_building_the_web_app_imports_no_migration_tooling_nor_what_rare_requests_need(tmp_path):
    settings = {"db.url": f"sqlite:///{tmp_path / 'w.sqlite'}", "huey.url": "memory://", "app.env": "test"}
    imported, routes = modules_after_building(settings)
    assert imported == []
    # The plugins did load: their webhooks are routed.
    assert {"/webhooks/stripe", "/webhooks/ses", "/webhooks/twilio/status"} <= set(routes)


def test_the_providers_chosen_check_their_settings_at_startup_without_their_sdks(tmp_path):
    settings = {"db.url": f"sqlite:///{tmp_path / 'w.sqlite'}", "huey.url": "memory://", "app.env": "test",
                **PROVIDERS_CHOSEN}
    assert modules_after_building(settings)[0] == []
    # A setting that cannot work still stops startup, before any send.
    with pytest.raises(subprocess.CalledProcessError) as failed:
        modules_after_building({**settings, "twilio.from_number": "0412 345 678"})
    assert "twilio.from_number" in failed.value.stderr
    with pytest.raises(subprocess.CalledProcessError) as failed:
        modules_after_building({**settings, "stripe.secret_key": ""})
    assert "stripe.secret_key" in failed.value.stderr


def test_a_web_worker_caps_its_malloc_arenas(monkeypatch):
    """gunicorn.conf.py's ``post_fork``: glibc takes the cap (2, or
    ``MALLOC_ARENA_MAX``); a refused one is logged."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
    warned = []
    config["post_fork"](SimpleNamespace(log=SimpleNamespace(warning=lambda *args: warned.append(args))), None)
    assert config["MALLOC_ARENAS"] == 3
    assert warned == []


def test_user_agents_are_read_without_ua_parsers_default_parser(tmp_path):
    """ua-parser's default parser builds the Rust matchers (some 26 MiB a
    process); the guard and the device names read with the Python one."""
    code = textwrap.dedent(f"""
        import ua_parser
        from guestguard import make_config
        from guestguard.accounts.devices import classify
        from guestguard.guard.signals import handset_of
        make_config({{"db.url": "sqlite:///{tmp_path / 'w.sqlite'}", "huey.url": "memory://",
                      "app.env": "test"}}).make_wsgi_app()
        phone = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/120.0 Mobile Safari/537.36")
        print(classify(phone).name, "|", handset_of(phone), "|", "parser" in vars(ua_parser))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "Chrome on Android | a Samsung SM-S918B (Android 14) | False"
