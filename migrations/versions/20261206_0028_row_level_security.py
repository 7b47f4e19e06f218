"""row-level security on PostgreSQL: every tenant table sees only the
workspaces the transaction's settings name (guestguard.rls)

Run as the tables' owner. FORCE makes the owner obey the policies too, so an
application connecting as the owner is held to them as well; only a
superuser or a role with BYPASSRLS is not. Nothing here names a role: the
application's role is created by the operator (docs/operations.md). SQLite:
nothing.

Revision ID: 0028
Revises: 0029
Create Date: 2026-12-06
"""
from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0029"
branch_labels = None
depends_on = None

# Tables whose rows all belong to one workspace.
TENANT_TABLES = (
    "activity", "admissions", "answer_alerts", "billing_dunning_notices", "billing_entitlements",
    "billing_notices", "billing_payments", "billing_usage", "bulk_actions", "delivery_days", "door_scans",
    "event_covers", "events", "feature_flags", "flags", "guest_imports", "guests", "rsvps",
    "scheduled_messages",
)
# Tables where a row may belong to no workspace (an unknown token's access,
# an account's own email, a platform audit entry): those rows are the
# application's to filter, as every row is on SQLite.
NULLABLE_TENANT_TABLES = ("access_log", "access_tallies", "audit_events", "notifications", "domain_events")
# Credentials looked up by a unique hash (or id) before their workspace is
# known: the row carrying guestguard.lookup is visible too.
CREDENTIAL_TABLES = {
    "api_keys": "lookup_id",
    "invitation_links": "token_hash",
    "workspace_invitations": "token_hash",
    "stream_tickets": "token_hash",
    "guest_passes": "secret_hash",
    "pass_secrets": "secret_hash",
}
ALL_TABLES = (*TENANT_TABLES, *NULLABLE_TENANT_TABLES, *CREDENTIAL_TABLES, "memberships", "workspaces",
              "domain_event_deliveries")

FUNCTIONS = """
CREATE FUNCTION guestguard_may_see(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(current_setting('guestguard.scope', true), '') = 'system'
      OR workspace = ANY (string_to_array(nullif(current_setting('guestguard.workspaces', true), ''), ',')::uuid[])
$$;
CREATE FUNCTION guestguard_user() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT nullif(current_setting('guestguard.user', true), '')::uuid
$$;
CREATE FUNCTION guestguard_lookup() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT nullif(current_setting('guestguard.lookup', true), '')
$$;
-- One round trip for a token path: look the credential up (only its row is
-- visible meanwhile) and open its workspace to the rest of the transaction.
-- Runs as its caller, under the caller's policies.
CREATE FUNCTION guestguard_open(credentials text, key_column text, key text) RETURNS uuid
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


def _protect(table: str, using: str, check: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant ON {table} USING ({using}) WITH CHECK ({check})")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTIONS)
    for table in TENANT_TABLES:
        _protect(table, "guestguard_may_see(workspace_id)", "guestguard_may_see(workspace_id)")
    nullable = "workspace_id IS NULL OR guestguard_may_see(workspace_id)"
    for table in NULLABLE_TENANT_TABLES:
        _protect(table, nullable, nullable)
    for table, column in CREDENTIAL_TABLES.items():
        _protect(table, f"guestguard_may_see(workspace_id) OR {column} = guestguard_lookup()",
                 "guestguard_may_see(workspace_id)")
    # A person's own memberships, whatever the scope: their roles are read
    # from them before it is known.
    _protect("memberships", "guestguard_may_see(workspace_id) OR user_id = guestguard_user()",
             "guestguard_may_see(workspace_id)")
    _protect("workspaces", "guestguard_may_see(id) OR id IN (SELECT workspace_id FROM memberships "
             "WHERE user_id = guestguard_user())", "guestguard_may_see(id)")
    # Through the domain event delivered (itself under its policy).
    _protect("domain_event_deliveries", "EXISTS (SELECT 1 FROM domain_events WHERE domain_events.id = event_id)",
             "EXISTS (SELECT 1 FROM domain_events WHERE domain_events.id = event_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ALL_TABLES:
        op.execute(f"DROP POLICY tenant ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION guestguard_open(text, text, text); DROP FUNCTION guestguard_lookup(); "
               "DROP FUNCTION guestguard_user(); DROP FUNCTION guestguard_may_see(uuid)")
