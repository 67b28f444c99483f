"""Urgent uses of deployments (the eu-ai-act urgent-use path)

``urgent_uses``: one row per deployment started without prior authorisation, with its
justification, its 24-hour deadline and how it ended (``openlfr.governance.urgent``). A new
table only: nothing existing changes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'urgent_uses',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.Integer(), nullable=False),
        sa.Column('started_by', sa.String(length=64), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('justification', sa.Text(), nullable=False),
        sa.Column('deadline', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.Column('decided_by', sa.String(length=64), nullable=True),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('refusal_reason', sa.Text(), nullable=True),
        sa.Column('results_deleted_at', sa.DateTime(), nullable=True),
        sa.Column('deleted_counts', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('deployment_id'),
    )
    op.create_index('ix_urgent_uses_deadline', 'urgent_uses', ['deadline'])


def downgrade() -> None:
    op.drop_index('ix_urgent_uses_deadline', table_name='urgent_uses')
    op.drop_table('urgent_uses')
