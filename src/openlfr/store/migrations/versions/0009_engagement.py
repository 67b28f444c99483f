"""Public engagement: the less intrusive alternatives and the consultation of a deployment

``deployments`` gains ``alternatives`` (which less intrusive alternatives were considered and
why they do not suffice), ``consultation_days``, ``consultation_opened_at`` and
``consultation_ends_at`` (the plan published as proposed, and the end of its consultation), and
``consultation_response``, ``consultation_response_by`` and ``consultation_response_at`` (the
authorising officer's response to the comments). All nullable: deployments already stored keep
every value they had, without a consultation. Columns are added in place (``op.add_column``):
``deployments`` is a parent table, and recreating it on SQLite would cascade to its children.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = (
    ('alternatives', sa.Text()),
    ('consultation_days', sa.Integer()),
    ('consultation_opened_at', sa.DateTime()),
    ('consultation_ends_at', sa.DateTime()),
    ('consultation_response', sa.Text()),
    ('consultation_response_by', sa.String(length=64)),
    ('consultation_response_at', sa.DateTime()),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column('deployments', sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column('deployments', name)
