"""Account lifecycle: one-time passwords, TOTP second factor, per-role account rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


# Plain ALTER TABLE ... ADD/DROP COLUMN, never a batch "copy and move": on SQLite that drops
# and recreates ``users``, and with foreign keys on, dropping it deletes every row that
# references an account with ON DELETE CASCADE (API tokens, sessions).


def upgrade() -> None:
    op.add_column('users', sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column('users', sa.Column('password_changed_at', sa.DateTime(), nullable=True))
    op.add_column('users', sa.Column('totp_secret', sa.LargeBinary(), nullable=True))
    op.add_column('users', sa.Column('totp_enabled', sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column('users', sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    op.create_table('role_policies',
    sa.Column('role', sa.Enum('admin', 'authorising_officer', 'operator', 'supervisor', 'auditor', name='role', native_enum=False, length=40), nullable=False),
    sa.Column('totp_required', sa.Boolean(), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('changed_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('role', name=op.f('pk_role_policies'))
    )


def downgrade() -> None:
    op.drop_table('role_policies')
    for column in ('totp_last_step', 'totp_enabled', 'totp_secret', 'password_changed_at',
                   'must_change_password'):
        op.drop_column('users', column)
