"""Sites and nodes

``sites`` and ``nodes`` (machines at a site that run cameras for the centre, enrolled with a
one-time token, their public keys registered), and ``cameras.node_id``: the node that runs a
camera (NULL: the centre). The column is added with ``op.add_column`` (no table rebuild).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openlfr.store.models

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sites',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_at', openlfr.store.models.UTCDateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
        sa.UniqueConstraint('name', name=op.f('uq_sites_name')),
    )
    op.create_table(
        'nodes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('status', sa.Enum('pending', 'enrolled', 'disabled', name='nodestatus',
                                    native_enum=False, length=40), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=True),
        sa.Column('token_expires_at', openlfr.store.models.UTCDateTime(), nullable=True),
        sa.Column('signing_key', sa.String(length=64), nullable=True),
        sa.Column('box_key', sa.String(length=64), nullable=True),
        sa.Column('nkey', sa.String(length=64), nullable=True),
        sa.Column('created_at', openlfr.store.models.UTCDateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('enrolled_at', openlfr.store.models.UTCDateTime(), nullable=True),
        sa.Column('disabled_at', openlfr.store.models.UTCDateTime(), nullable=True),
        sa.Column('disabled_by', sa.String(length=64), nullable=True),
        sa.Column('disable_reason', sa.Text(), nullable=True),
        sa.Column('desired_digest', sa.String(length=64), nullable=True),
        sa.Column('desired_at', openlfr.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_nodes_site_id_sites'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes')),
        sa.UniqueConstraint('name', name=op.f('uq_nodes_name')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_nodes_token_hash')),
        sa.UniqueConstraint('nkey', name=op.f('uq_nodes_nkey')),
    )
    op.create_index(op.f('ix_nodes_site_id'), 'nodes', ['site_id'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite adds a column with its reference inline (Alembic would want a table rebuild,
        # which the rule forbids: no batch_alter_table).
        op.execute('ALTER TABLE cameras ADD COLUMN node_id INTEGER '
                   'CONSTRAINT fk_cameras_node_id_nodes REFERENCES nodes (id) '
                   'ON DELETE SET NULL')
    else:
        op.add_column('cameras', sa.Column('node_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_cameras_node_id_nodes'), 'cameras', 'nodes',
                              ['node_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_cameras_node_id_nodes'), 'cameras', type_='foreignkey')
    op.drop_column('cameras', 'node_id')
    op.drop_index(op.f('ix_nodes_site_id'), table_name='nodes')
    op.drop_table('nodes')
    op.drop_table('sites')
