"""guestguard_open looks the credentials it knows up with static SQL, whose
plan PL/pgSQL keeps, rather than a dynamic statement parsed and planned at
every call (each guest's page, answer and calendar file opens a link)

Same arguments, result and settings as before; a table it does not name is
still looked up dynamically. SQLite: nothing.

Revision ID: 0030
Revises: 0028
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op

revision = "0030"
down_revision = "0028"
branch_labels = None
depends_on = None

STATIC = """
CREATE OR REPLACE FUNCTION guestguard_open(credentials text, key_column text, key text) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  found uuid;
BEGIN
  PERFORM set_config('guestguard.lookup', key, true);
  CASE credentials || '.' || key_column
    WHEN 'invitation_links.token_hash' THEN
      SELECT workspace_id INTO found FROM invitation_links WHERE token_hash = key;
    WHEN 'guest_passes.secret_hash' THEN
      SELECT workspace_id INTO found FROM guest_passes WHERE secret_hash = key;
    WHEN 'pass_secrets.secret_hash' THEN
      SELECT workspace_id INTO found FROM pass_secrets WHERE secret_hash = key;
    WHEN 'api_keys.lookup_id' THEN
      SELECT workspace_id INTO found FROM api_keys WHERE lookup_id = key;
    WHEN 'workspace_invitations.token_hash' THEN
      SELECT workspace_id INTO found FROM workspace_invitations WHERE token_hash = key;
    WHEN 'stream_tickets.token_hash' THEN
      SELECT workspace_id INTO found FROM stream_tickets WHERE token_hash = key;
    ELSE
      EXECUTE format('SELECT workspace_id FROM %I WHERE %I = $1', credentials, key_column) INTO found USING key;
  END CASE;
  IF found IS NOT NULL THEN
    PERFORM set_config('guestguard.workspaces',
                       concat_ws(',', nullif(current_setting('guestguard.workspaces', true), ''), found::text), true);
  END IF;
  RETURN found;
END
$$;
"""

DYNAMIC = """
CREATE OR REPLACE FUNCTION guestguard_open(credentials text, key_column text, key text) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  found uuid;
BEGIN
  PERFORM set_config('guestguard.lookup', key, true);
  EXECUTE format('SELECT workspace_id FROM %I WHERE %I = $1', credentials, key_column) INTO found USING key;
  IF found IS NOT NULL THEN
    PERFORM set_config('guestguard.workspaces',
                       concat_ws(',', nullif(current_setting('guestguard.workspaces', true), ''), found::text), true);
  END IF;
  RETURN found;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(STATIC)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DYNAMIC)
