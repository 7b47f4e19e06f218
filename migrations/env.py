"""Alembic environment, configured from the app's ini file:
``guestguard migrate development.ini``, or ``alembic -c development.ini upgrade head``
from the repository root (``[tool.alembic]`` in pyproject.toml names this directory).

The database URL comes from the app's own settings reader, so ``GG_DB_URL``
overrides it exactly as it does for the app. Tests may hand a URL in
``config.attributes["db_url"]``.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from pyramid.paster import get_appsettings
from sqlalchemy import create_engine, pool

from guestguard import read_settings
from guestguard.db import UTCDateTime
from guestguard.models import metadata

config = context.config


def database_url() -> str:
    if config.attributes.get("db_url"):
        return config.attributes["db_url"]
    settings, _pm, _reader = read_settings(get_appsettings(config.config_file_name, name="main"))
    # Migrations run as the tables' owner, the application perhaps as a role
    # that owns nothing (row-level security).
    return settings["db.migrate_url"] or settings["db.url"]


def render_item(type_, obj, autogen_context):
    """Write the app's column types as plain SQLAlchemy types, so migrations
    do not depend on application code that may change."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, sa.JSON):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    if url.startswith("sqlite"):
        from guestguard.db import ensure_sqlite_dir

        ensure_sqlite_dir(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True, render_item=render_item)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # A migration moving rows sees every workspace's (the
                # policies of migration 0028 hold the owner too).
                connection.execute(sa.text("SELECT set_config('guestguard.scope', 'system', true)"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
