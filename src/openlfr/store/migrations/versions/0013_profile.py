"""Jurisdiction profile of the installation

``installation.profile``: the jurisdiction profile in force (``openlfr.governance.profiles``);
NULL means the default. Added with ``op.add_column``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('installation', sa.Column('profile', sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column('installation', 'profile')
