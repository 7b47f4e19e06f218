"""Every migration upgrades and downgrades; the models match the migrations."""
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from guestguard.models import metadata
from guestguard.testing import DATABASE_ENV, downgrade, migrate


def tables(url):
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


# PostgreSQL joins when GG_TEST_DATABASE_URL names it (CI sets it).
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get(DATABASE_ENV) else [])


@pytest.fixture(params=BACKENDS)
def migration_url(request, tmp_path, postgres_owner_url):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/migrations.sqlite"
    return postgres_owner_url  # migrations run as the tables' owner


def test_upgrade_downgrade_upgrade(migration_url):
    migrate(migration_url)
    assert tables(migration_url) == set(metadata.tables)
    downgrade(migration_url, "base")
    assert tables(migration_url) == set()
    migrate(migration_url)
    assert tables(migration_url) == set(metadata.tables)


def test_models_match_the_migrations(migration_url):
    migrate(migration_url)
    engine = create_engine(migration_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_messages_about_a_guest_name_them_in_the_indexed_column_after_0025(migration_url):
    """0025 fills notifications.guest_id from ``about`` for the messages
    already stored, so forgetting a guest finds those too."""
    import uuid

    from sqlalchemy import select

    migrate(migration_url)
    notifications = metadata.tables["notifications"]
    guest_id, about_event = uuid.uuid4(), uuid.uuid4()
    rows = [{"id": uuid.uuid4(), "channel": "email", "recipient": "grace@example.com", "template": "invitation",
             "about": about} for about in ({"event_id": str(about_event), "guest_id": str(guest_id)},
                                           {"event_id": str(about_event)}, {"guest_id": "not an id"})]
    engine = create_engine(migration_url)
    try:
        with engine.begin() as connection:
            connection.execute(notifications.delete())
            connection.execute(notifications.insert(), rows)
        downgrade(migration_url, "0024")
        migrate(migration_url)
        with engine.begin() as connection:
            found = dict(connection.execute(select(notifications.c.id, notifications.c.guest_id)).all())
            connection.execute(notifications.delete())
    finally:
        engine.dispose()
    assert [found[row["id"]] for row in rows] == [guest_id, None, None]
