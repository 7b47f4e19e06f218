"""The guestguard command against a real ini file."""
import logging
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from guestguard.testing import REPO_ROOT, command_in_process, guestguard_command as run, site_ini

# In one pass only when make test runs both: the command runs on its ini's own SQLite database.
pytestmark = pytest.mark.one_pass("sqlite")


@pytest.fixture
def ini(tmp_path):
    """development.ini copied, as is, away from the source tree."""
    return site_ini(tmp_path)


def test_migrate_creates_the_schema_where_the_ini_says(ini, tmp_path):
    result = run("migrate", str(ini))
    assert result.returncode == 0, result.stderr
    engine = create_engine(f"sqlite:///{tmp_path}/var/guestguard.sqlite")
    assert "notifications" in inspect(engine).get_table_names()
    engine.dispose()


def test_a_bad_script_location_is_one_plain_line_naming_the_setting(ini, tmp_path):
    ini.write_text(ini.read_text().replace("[alembic]\n", f"[alembic]\nscript_location = {tmp_path}/nowhere\n"))
    result = run("migrate", str(ini))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "'script_location' in [alembic]" in result.stderr and f"{tmp_path}/nowhere" in result.stderr


def test_an_ini_without_an_alembic_section_migrates(ini, tmp_path):
    text = ini.read_text()
    start = text.index("[alembic]")
    ini.write_text(text[:start] + text[text.index("[server:main]"):])
    assert run("migrate", str(ini)).returncode == 0
    assert (tmp_path / "var" / "guestguard.sqlite").exists()


def test_an_unknown_revision_is_one_plain_line(ini):
    result = run("migrate", str(ini), "--revision", "f00dfeed")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "f00dfeed" in result.stderr


def test_a_missing_ini_file_is_one_plain_line(tmp_path):
    result = run("migrate", str(tmp_path / "nowhere.ini"))
    assert result.returncode == 2
    assert result.stderr == f"guestguard: no such ini file: {tmp_path / 'nowhere.ini'}\n"


def test_environment_overrides_reach_migrate(ini, tmp_path):
    target = tmp_path / "elsewhere.sqlite"
    result = run("migrate", str(ini), env={"GG_DB_URL": f"sqlite:///{target}"})
    assert result.returncode == 0, result.stderr
    assert target.exists()


def test_bad_settings_exit_with_a_message_naming_the_setting(ini):
    result = run("plugins", str(ini), env={"GG_DB_POOL_SIZE": "lots"})
    assert result.returncode == 2
    assert "db.pool_size" in result.stderr and "GG_DB_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_without_its_secret_exits_naming_the_variable():
    result = run("settings", str(REPO_ROOT / "production.ini"))
    assert result.returncode == 2
    assert "GG_APP_SECRET" in result.stderr


def test_settings_lists_values_with_secrets_masked(ini):
    result = run("settings", str(ini), env={"GG_APP_SECRET": "a-very-secret-value-of-some-length"})
    assert result.returncode == 0, result.stderr
    assert "app.secret = '********'" in result.stdout
    assert "a-very-secret-value" not in result.stdout
    assert "huey.in_process_worker = True" in result.stdout


def test_app_role_prints_the_role_and_its_grants_for_postgresql_only(ini):
    postgres = {"GG_DB_URL": "postgresql+psycopg://owner@db.example/guestguard"}
    result = run("app-role", str(ini), "guestguard_app", env=postgres)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("CREATE ROLE guestguard_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                        "NOBYPASSRLS;")
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO guestguard_app;" in lines
    assert not any(" OWNER " in line or "BYPASSRLS;" in line.replace("NOBYPASSRLS;", "") for line in lines)
    refused = run("app-role", str(ini), "app; DROP TABLE users", env=postgres)
    assert refused.returncode == 2 and "role name" in refused.stderr and refused.stdout == ""
    sqlite = run("app-role", str(ini), "guestguard_app")
    assert sqlite.returncode == 2 and "PostgreSQL" in sqlite.stderr


def test_send_test_queues_a_message(ini, tmp_path):
    assert run("migrate", str(ini)).returncode == 0
    result = run("send-test", str(ini), "--to", "ops@example.com",
                 env={"GG_HUEY_URL": f"sqlite:///{tmp_path}/queue.sqlite"})
    assert result.returncode == 0, result.stderr
    assert "queued notification" in result.stdout
    engine = create_engine(f"sqlite:///{tmp_path}/var/guestguard.sqlite")
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT recipient, status FROM notifications").all()
    engine.dispose()
    assert rows == [("ops@example.com", "pending")]


# --- the port ----------------------------------------------------------------

def server_options(ini: Path, **variables) -> dict:
    """[server:main] as pserve reads it, with ``pserve <ini> name=value`` variables."""
    from paste.deploy.loadwsgi import SERVER, loadcontext

    return loadcontext(SERVER, f"config:{ini}", global_conf=variables).local_conf


def test_production_ini_names_no_server_so_waitress_cannot_serve_production():
    """waitress stops at once on SIGTERM and reads a body by Transfer-Encoding
    when Content-Length is there too: gunicorn.conf.py serves production."""
    with pytest.raises(LookupError):
        server_options(REPO_ROOT / "production.ini")


@pytest.mark.parametrize("name, host", [("development.ini", "localhost")])
def test_the_port_defaults_to_6543_and_pserve_variables_override_it(name, host):
    from waitress.adjustments import Adjustments

    assert Adjustments(**server_options(REPO_ROOT / name)).listen[0][3] == (
        "127.0.0.1" if host == "localhost" else host, 6543)
    assert Adjustments(**server_options(REPO_ROOT / name, http_port="8080")).port == 8080
    assert server_options(REPO_ROOT / name, http_port="8080")["host"] == host


def test_make_run_passes_its_port_on():
    def dry_run(*args):
        result = subprocess.run(["make", "-n", "run", *args], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "pserve development.ini http_port=6543" in dry_run()
    assert "GG_APP_BASE_URL" not in dry_run()
    assert "pserve development.ini http_port=8080" in dry_run("PORT=8080")
    assert "http://localhost:8080" in dry_run("PORT=8080"), "links in messages follow the port"


# --- domain events -------------------------------------------------------------

def test_events_list_and_replay_dead_ones(ini, tmp_path):
    import datetime as dt
    import uuid

    from sqlalchemy import insert

    from guestguard.domain import DomainEventRow

    assert run("migrate", str(ini)).returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path}/var/guestguard.sqlite")
    dead, pending = uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        for event_id, status, name in ((dead, "dead", "rsvp.received"), (pending, "pending", "guest.created")):
            connection.execute(insert(DomainEventRow).values(
                id=event_id, name=name, data={"guest_id": "g1"}, aggregate="guest:g1", occurred_at=now,
                status=status, attempts=6 if status == "dead" else 0, next_attempt_at=now,
                last_error="crm: ConnectionError('refused')" if status == "dead" else None))
    queue = {"GG_HUEY_URL": f"sqlite:///{tmp_path}/queue.sqlite"}

    listed = run("events", "list", str(ini), "--status", "dead", env=queue)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"{dead}  dead  attempts=6  ") and "rsvp.received  guest:g1  crm: ConnectionError" in line
    assert len(run("events", "list", str(ini), env=queue).stdout.splitlines()) == 2

    refused = run("events", "replay", str(ini), str(pending), env=queue)
    assert refused.returncode == 1 and "pending, not dead" in refused.stderr
    assert run("events", "replay", str(ini), env=queue).returncode == 2
    replayed = run("events", "replay", str(ini), "--dead", env=queue)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {dead}" in replayed.stdout
    with engine.connect() as connection:
        status = connection.execute(select_status(dead)).one()
        audited = connection.exec_driver_sql("SELECT action FROM audit_events").scalars().all()
    engine.dispose()
    assert status == ("pending", 0)
    assert audited == ["domain_event.replayed"]
    assert "no dead domain events" in run("events", "list", str(ini), "--status", "dead", env=queue).stderr


def test_webhooks_list_and_replay_failed_ones(ini, tmp_path):
    import datetime as dt
    import uuid

    from sqlalchemy import insert, select

    from guestguard.webhooks.models import InboxEntry

    assert run("migrate", str(ini)).returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path}/var/guestguard.sqlite")
    failed, done = uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        for entry_id, status, event_id, at in ((failed, "failed", "sns-1", now),
                                               (done, "succeeded", "sns-2", now + dt.timedelta(seconds=1))):
            connection.execute(insert(InboxEntry).values(
                id=entry_id, provider="ses", event_id=event_id, received_at=at, body="{}", headers={},
                status=status, attempts=6 if status == "failed" else 1, next_attempt_at=now,
                note="notification x: sent -> delivered" if status == "succeeded" else None,
                last_error="FetchFailed: answered 404" if status == "failed" else None))
    queue = {"GG_HUEY_URL": f"sqlite:///{tmp_path}/queue.sqlite"}

    listed = run("webhooks", "list", str(ini), "--status", "failed", env=queue)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"{failed}  failed  attempts=6  ") and line.endswith("ses  sns-1  FetchFailed: answered 404")
    assert run("webhooks", "list", str(ini), "--provider", "ses", env=queue).stdout.splitlines()[1].endswith(
        "sns-2  notification x: sent -> delivered")
    assert "no webhooks" in run("webhooks", "list", str(ini), "--provider", "twilio", env=queue).stderr

    refused = run("webhooks", "replay", str(ini), str(done), env=queue)
    assert refused.returncode == 1 and f"webhook {done} is succeeded, not failed" in refused.stderr
    assert run("webhooks", "replay", str(ini), "not-an-id", env=queue).returncode == 2
    replayed = run("webhooks", "replay", str(ini), "--failed", env=queue)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {failed}" in replayed.stdout and "1 webhook(s) queued again" in replayed.stdout
    with engine.connect() as connection:
        status = connection.execute(select(InboxEntry.status, InboxEntry.attempts, InboxEntry.last_error)
                                    .where(InboxEntry.id == failed)).one()
        audited = connection.exec_driver_sql("SELECT action FROM audit_events").scalars().all()
    engine.dispose()
    assert status[:2] == ("pending", 0)
    assert status[2].endswith("last error: FetchFailed: answered 404")
    assert audited == ["webhook.replayed"]


def select_status(event_id):
    from sqlalchemy import select

    from guestguard.domain import DomainEventRow

    return select(DomainEventRow.status, DomainEventRow.attempts).where(DomainEventRow.id == event_id)


def test_a_command_run_in_process_leaves_logging_as_it_was(ini):
    """The ini's logging would replace the root's handlers with one on this
    test's captured stream, closed once the test ends: every later test's
    log lines would go there (a logging error each) instead of to pytest."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    assert command_in_process("settings", str(ini)) == 0
    assert (root.handlers, root.level) == (handlers, level)
