"""The guard: access log and its tallies, flags, activity, stream tickets;
guests.open_flags; notifications.about.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 03:45:27.163228
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stream_tickets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('session_id', sa.Uuid(), nullable=True),
    sa.Column('api_key_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_stream_tickets_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_stream_tickets_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_stream_tickets_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['auth_sessions.id'], name=op.f('fk_stream_tickets_session_id_auth_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_stream_tickets_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stream_tickets')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_stream_tickets_token_hash'))
    )
    with op.batch_alter_table('stream_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stream_tickets_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stream_tickets_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('access_tallies',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=True),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('guest_id', sa.Uuid(), nullable=True),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('automated', sa.Boolean(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_access_tallies_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_access_tallies_guest_id_guests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_access_tallies_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_tallies'))
    )
    with op.batch_alter_table('access_tallies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_tallies_guest_id'), ['guest_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_tallies_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('activity',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('guest_id', sa.Uuid(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_activity_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_activity_guest_id_guests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_activity_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity'))
    )
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.create_index('ix_activity_event_at_id', ['event_id', 'at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activity_guest_id'), ['guest_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activity_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('access_log',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=True),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('guest_id', sa.Uuid(), nullable=True),
    sa.Column('link_id', sa.Uuid(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('network', sa.String(length=49), nullable=False),
    sa.Column('user_agent', sa.String(length=512), nullable=False),
    sa.Column('device', sa.String(length=120), nullable=False),
    sa.Column('automated', sa.Boolean(), nullable=False),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_access_log_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_access_log_guest_id_guests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['link_id'], ['invitation_links.id'], name=op.f('fk_access_log_link_id_invitation_links'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_access_log_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_log'))
    )
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_guest_id'), ['guest_id'], unique=False)
        batch_op.create_index('ix_access_log_link_at', ['link_id', 'at'], unique=False)
        batch_op.create_index('ix_access_log_pending', ['at'], unique=False,
                              sqlite_where=sa.text("evaluated_at IS NULL AND link_id IS NOT NULL"),
                              postgresql_where=sa.text("evaluated_at IS NULL AND link_id IS NOT NULL"))
        batch_op.create_index(batch_op.f('ix_access_log_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('flags',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('guest_id', sa.Uuid(), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=True),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_flags_closed_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_flags_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_flags_guest_id_guests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['link_id'], ['invitation_links.id'], name=op.f('fk_flags_link_id_invitation_links'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_flags_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flags'))
    )
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.create_index('ix_flags_event_created_id', ['event_id', 'created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_flags_guest_id'), ['guest_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_flags_workspace_id'), ['workspace_id'], unique=False)
        batch_op.create_index('uq_flags_open_rule', ['guest_id', 'link_id', 'rule'], unique=True,
                              sqlite_where=sa.text("status = 'open'"),
                              postgresql_where=sa.text("status = 'open'"))

    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('open_flags', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('about', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                      server_default=sa.text("'{}'"), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('about')

    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.drop_column('open_flags')

    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.drop_index('uq_flags_open_rule')
        batch_op.drop_index(batch_op.f('ix_flags_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_flags_guest_id'))
        batch_op.drop_index('ix_flags_event_created_id')

    op.drop_table('flags')
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_log_workspace_id'))
        batch_op.drop_index('ix_access_log_pending')
        batch_op.drop_index('ix_access_log_link_at')
        batch_op.drop_index(batch_op.f('ix_access_log_guest_id'))
        batch_op.drop_index(batch_op.f('ix_access_log_at'))

    op.drop_table('access_log')
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activity_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_activity_guest_id'))
        batch_op.drop_index('ix_activity_event_at_id')

    op.drop_table('activity')
    with op.batch_alter_table('access_tallies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_tallies_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_access_tallies_guest_id'))

    op.drop_table('access_tallies')
    with op.batch_alter_table('stream_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stream_tickets_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_stream_tickets_expires_at'))

    op.drop_table('stream_tickets')
