"""Equality monitoring of false alerts: stop, its length, perceived ethnicity and sex

Five nullable columns on ``outcomes``: ``not_subject`` (a confirmed alert's engaged person turned
out not to be the subject), ``stopped``, ``stop_minutes``, ``perceived_ethnicity`` and
``perceived_sex`` (census categories, an officer's perception). Added with ``op.add_column``:
rows already stored keep NULL (nothing recorded).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outcomes', sa.Column('not_subject', sa.Boolean(), nullable=True))
    op.add_column('outcomes', sa.Column('stopped', sa.Boolean(), nullable=True))
    op.add_column('outcomes', sa.Column('stop_minutes', sa.Integer(), nullable=True))
    op.add_column('outcomes', sa.Column('perceived_ethnicity', sa.String(length=32),
                                        nullable=True))
    op.add_column('outcomes', sa.Column('perceived_sex', sa.String(length=16), nullable=True))


def downgrade() -> None:
    for column in ('perceived_sex', 'perceived_ethnicity', 'stop_minutes', 'stopped',
                   'not_subject'):
        op.drop_column('outcomes', column)
