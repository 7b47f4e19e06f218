"""Recovery: a populated PostgreSQL database is dumped, restored into a new
one, and ``guestguard restore-verify`` passes on it; one broken invariant
makes it fail, naming it. On SQLite: the checks themselves."""
import logging
import re
import subprocess
import uuid

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from guestguard.testing import add_guest, alembic_config, event_host, guestguard_command, issue, site_ini

log = logging.getLogger(__name__)
EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}


def populate(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    grace = add_guest(app, host)
    alan = add_guest(app, host, name="Alan Turing", email="alan@example.com")
    # Two invitations emailed: messages and the workspace's delivery counts.
    app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202)
    for guest, answer in ((grace, "yes"), (alan, "no")):
        token = issue(app, host, guest)["token"]
        app.get(f"/access/{token}")
        app.post(f"/rsvp/{token}", {"response": answer, "plus_ones": "0"}, status=303)
    return host, grace


def verify(ini, db_url):
    return guestguard_command("restore-verify", str(ini), env={"GG_DB_URL": db_url, "GG_HUEY_URL": "memory://"},
                              timeout=120)


@pytest.fixture
def owner_url(db_url, postgres_owner_url):
    """The test database as its owner: backups, restores and the breaches
    planted here are the operator's (the application's role, under
    row-level security, may do none of them)."""
    return postgres_owner_url or db_url


def execute(db_url, statement, **params):
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(statement), params)
    engine.dispose()


def test_the_checks_pass_on_a_live_database_and_name_a_breach(app, run_in_request, db_url, owner_url, tmp_path):
    _, grace = populate(app, run_in_request)
    ini = site_ini(tmp_path)
    passed = verify(ini, db_url)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "all 8 checks passed" in passed.stdout
    execute(owner_url, "UPDATE guests SET open_flags = 3 WHERE id = :id", id=uuid.UUID(grace["id"]).hex
            if db_url.startswith("sqlite") else grace["id"])
    failed = verify(ini, db_url)
    assert failed.returncode == 1
    assert "FAIL  counts kept on guests match their flags: 1 guest(s)" in failed.stdout
    assert "7 of 8 checks passed" in failed.stdout


def test_delivery_counts_that_disagree_with_the_messages_fail(app, run_in_request, db_url, owner_url, tmp_path):
    host, _ = populate(app, run_in_request)
    ini = site_ini(tmp_path)
    assert "ok    delivery counts match the messages: all match" in verify(ini, db_url).stdout
    workspace = uuid.UUID(host["workspace"])
    # A day's count lost in a restore that took one table from an older backup.
    execute(owner_url, "UPDATE delivery_days SET sent = sent - 1 WHERE workspace_id = :id AND channel = 'email'",
            id=workspace.hex if db_url.startswith("sqlite") else str(workspace))
    failed = verify(ini, db_url)
    assert failed.returncode == 1
    found = re.search(rf"FAIL  delivery counts match the messages: workspace {workspace} email sent: "
                      r"(\d+) counted, (\d+) message\(s\)\n", failed.stdout)
    assert found, failed.stdout
    counted, messages = map(int, found.groups())
    assert counted == messages - 1 and messages >= 2
    assert "7 of 8 checks passed" in failed.stdout


def test_a_message_noted_but_not_yet_recorded_is_not_yet_counted_and_no_breach(
        app, run_in_request, db_url, owner_url, tmp_path):
    """A backup taken while a worker had a message noted (the provider took
    it) but its outcome not recorded: the send is not counted yet, and that
    agrees with the messages; the next attempt will record and count it."""
    host, _ = populate(app, run_in_request)
    ini = site_ini(tmp_path)
    workspace = uuid.UUID(host["workspace"])
    as_stored = workspace.hex if db_url.startswith("sqlite") else str(workspace)
    execute(owner_url, "UPDATE notifications SET status = 'running' WHERE id = (SELECT id FROM notifications "
                       "WHERE workspace_id = :id AND channel = 'email' AND sent_at IS NOT NULL LIMIT 1)", id=as_stored)
    execute(owner_url, "UPDATE delivery_days SET sent = sent - 1 WHERE workspace_id = :id AND channel = 'email'",
            id=as_stored)
    assert "ok    delivery counts match the messages: all match" in verify(ini, db_url).stdout


def test_a_database_behind_the_code_fails_at_the_schema(app, db_url, owner_url, tmp_path):
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    execute(owner_url, "UPDATE alembic_version SET version_num = '0016'")
    try:
        failed = verify(site_ini(tmp_path), db_url)
    finally:
        # The database outlives this test on PostgreSQL (emptied, not dropped).
        execute(owner_url, f"UPDATE alembic_version SET version_num = '{head}'")
    assert failed.returncode == 1
    assert f"FAIL  schema at the migration head: database at 0016, code at {head}" in failed.stdout


def pg(command, *args):
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=300, check=True)


def test_a_dump_restored_into_a_new_database_verifies(app, run_in_request, owner_url, tmp_path):
    if not owner_url.startswith("postgresql"):
        pytest.skip("pg_dump and pg_restore: PostgreSQL")
    _, grace = populate(app, run_in_request)
    url = make_url(owner_url)
    server = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    dump = tmp_path / "backup.dump"
    pg("pg_dump", *server, "--format=custom", "--no-owner", "--file", str(dump), url.database)
    restored = f"{url.database}_restored"
    pg("dropdb", *server, "--if-exists", restored)
    pg("createdb", *server, restored)
    try:
        pg("pg_restore", *server, "--no-owner", "--exit-on-error", "--dbname", restored, str(dump))
        restored_url = url.set(database=restored).render_as_string(hide_password=False)
        ini = site_ini(tmp_path)
        passed = verify(ini, restored_url)
        log.info("restore-verify on the restored copy:\n%s", passed.stdout)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "all 8 checks passed" in passed.stdout
        # One invariant broken: Grace's answer no longer her latest RSVP.
        execute(restored_url, "UPDATE guests SET response = 'maybe' WHERE id = :id", id=grace["id"])
        failed = verify(ini, restored_url)
        log.info("restore-verify after breaking one invariant:\n%s", failed.stdout)
        assert failed.returncode == 1
        assert ("FAIL  every guest's answer is their latest RSVP: 1 guest(s) whose answer is not their latest "
                "RSVP, 0 with RSVPs but no answer") in failed.stdout
    finally:
        pg("dropdb", *server, "--if-exists", "--force", restored)
