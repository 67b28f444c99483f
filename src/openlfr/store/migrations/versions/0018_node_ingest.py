"""The centre's side of its nodes: leases, alerts from nodes, health

``deployments.lease_seconds`` (how long a lease the centre grants a node running the
deployment's cameras; default 60), ``alerts.node_alert_id`` (``<node id>:<alert id>`` of an
alert a node sent, unique: the same alert delivered twice is stored once), ``node_health``
(when each node was last heard, its lease) and ``node_cameras`` (each node camera's health and
the node run's counts last added to ``camera_stats``). Columns are added with
``op.add_column`` (no table rebuild).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openlfr.store.models

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deployments', sa.Column('lease_seconds', sa.Integer(), nullable=False,
                                           server_default='60'))
    op.add_column('alerts', sa.Column('node_alert_id', sa.String(length=100), nullable=True))
    op.create_index(op.f('ix_alerts_node_alert_id'), 'alerts', ['node_alert_id'], unique=True)
    op.create_table(
        'node_health',
        sa.Column('node_id', sa.Integer(), nullable=False),
        sa.Column('last_seen', openlfr.store.models.UTCDateTime(), nullable=False),
        sa.Column('interval', sa.Float(), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=True),
        sa.Column('cpu', sa.Float(), nullable=True),
        sa.Column('lease', sa.Text(), nullable=True),
        sa.Column('lease_granted_at', openlfr.store.models.UTCDateTime(), nullable=True),
        sa.Column('lease_granted', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'],
                                name=op.f('fk_node_health_node_id_nodes'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('node_id', name=op.f('pk_node_health')),
    )
    op.create_table(
        'node_cameras',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.Integer(), nullable=False),
        sa.Column('camera', sa.String(length=100), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=True),
        sa.Column('connected', sa.Boolean(), nullable=False),
        sa.Column('fps_in', sa.Float(), nullable=True),
        sa.Column('fps_analysed', sa.Float(), nullable=True),
        sa.Column('reconnects', sa.Integer(), nullable=False),
        sa.Column('frames', sa.Integer(), nullable=False),
        sa.Column('faces_seen', sa.Integer(), nullable=False),
        sa.Column('tracks', sa.Integer(), nullable=False),
        sa.Column('dropped', sa.Integer(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('updated_at', openlfr.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                                name=op.f('fk_node_cameras_deployment_id_deployments'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'],
                                name=op.f('fk_node_cameras_node_id_nodes'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_node_cameras')),
        sa.UniqueConstraint('node_id', 'deployment_id', 'camera',
                            name=op.f('uq_node_cameras_node_id')),
    )


def downgrade() -> None:
    op.drop_table('node_cameras')
    op.drop_table('node_health')
    op.drop_index(op.f('ix_alerts_node_alert_id'), table_name='alerts')
    op.drop_column('alerts', 'node_alert_id')
    op.drop_column('deployments', 'lease_seconds')
