"""Recognisers that users add

``user_models`` records each recogniser added with ``openlfr models add``: its name, model id,
SHA-256 and file in the data directory, how to run it (JSON), and the calibrated threshold
floor that makes it usable for deployments.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('config', sa.Text(), nullable=False),
    sa.Column('floor_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['floor_id'], ['threshold_floors.id'],
                            name=op.f('fk_user_models_floor_id_threshold_floors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_models')),
    sa.UniqueConstraint('model_id', name=op.f('uq_user_models_model_id')),
    sa.UniqueConstraint('name', name=op.f('uq_user_models_name'))
    )


def downgrade() -> None:
    op.drop_table('user_models')
