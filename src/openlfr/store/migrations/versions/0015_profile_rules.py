"""The rules of the jurisdiction profiles

Plan fields: ``notice_at`` (when the advance public notice was published), ``target_fpir`` (the
false-alert rate the plan aims at), ``fria_ref`` (fundamental rights impact assessment) and
``eu_db_ref`` (EU database registration). Authorisation fields: the authorising officer's rank,
the approval of the watchlist criteria, the independent authority's decision, and the
calibration the threshold was checked against. ``use_notifications``: the notification record
generated at each start under ``eu-ai-act``. Columns added with ``op.add_column``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

COLUMNS = (
    ('notice_at', lambda: sa.DateTime()),
    ('target_fpir', lambda: sa.Float()),
    ('fria_ref', lambda: sa.String(length=200)),
    ('eu_db_ref', lambda: sa.String(length=200)),
    ('authorised_rank', lambda: sa.String(length=40)),
    ('criteria_approval', lambda: sa.Text()),
    ('authority_ref', lambda: sa.String(length=200)),
    ('authority_name', lambda: sa.String(length=200)),
    ('authority_date', lambda: sa.String(length=10)),
    ('authority_scope', lambda: sa.Text()),
    ('calibration_id', lambda: sa.Integer()),
    ('calibration_representative', lambda: sa.Boolean()),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column('deployments', sa.Column(name, kind(), nullable=True))
    op.create_table(
        'use_notifications',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('deployment_id', sa.Integer(),
                  sa.ForeignKey('deployments.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('use_notifications')
    for name, _ in reversed(COLUMNS):
        op.drop_column('deployments', name)
