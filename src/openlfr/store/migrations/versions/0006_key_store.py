"""Data keys move to the key store; pending purges

The wrapped data keys leave the database for one file each in the data directory's key store
(``openlfr.store.keystore``). This revision only changes the schema: ``data_keys`` gains
``destroyed_at`` (a destroyed key's row stays as the record), ``installation`` names this
database's folder of the key store, and ``pending_purges`` records deletions whose traces
could not all be removed yet. Moving the keys themselves needs the data
directory, so it is done when the installation is opened (``openlfr.governance.system``), which
then empties the ``wrapped`` column.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('data_keys', sa.Column('destroyed_at', sa.DateTime(), nullable=True))
    op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_store', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installation')),
    sa.UniqueConstraint('key_store', name=op.f('uq_installation_key_store'))
    )
    op.create_table('pending_purges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.String(length=80), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_purges'))
    )


def downgrade() -> None:
    # Not a batch (table copy) on SQLite: dropping data_keys would set every watchlist's and
    # deployment's data_key_id to NULL through the foreign keys. The keys themselves stay in
    # the key store, where an older openlfr does not look (and, the installation row gone, an
    # upgrade again would name a new folder: move the files of keys/<old>/ into it by hand).
    op.drop_table('pending_purges')
    op.drop_table('installation')
    op.execute('ALTER TABLE data_keys DROP COLUMN destroyed_at')
