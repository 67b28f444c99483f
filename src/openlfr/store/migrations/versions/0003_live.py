"""Live runs: a paused deployment's reason, and each camera's state in the latest run

``deployments.status`` gains the value ``paused``: the column is a non-native enum (a
VARCHAR(40) without a CHECK constraint), so no change of the column is needed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pause_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('camera_stats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('state_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE deployments SET status = 'running' WHERE status = 'paused'")
    with op.batch_alter_table('camera_stats', schema=None) as batch_op:
        batch_op.drop_column('last_error')
        batch_op.drop_column('state_since')
        batch_op.drop_column('state')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_column('pause_reason')
