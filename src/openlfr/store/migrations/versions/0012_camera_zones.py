"""Analysis zones and privacy masks per camera

``cameras.zones`` and ``cameras.masks``: JSON lists of polygons in normalised coordinates
(``openlfr.video.zones``), part of the deployment's plan. Added with ``op.add_column`` (no table
rebuild: ``cameras`` has no children, but the rule holds everywhere).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('cameras', sa.Column('zones', sa.Text(), nullable=True))
    op.add_column('cameras', sa.Column('masks', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('cameras', 'masks')
    op.drop_column('cameras', 'zones')
