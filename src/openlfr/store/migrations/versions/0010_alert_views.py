"""Views of alerts, counted per sign-in session

``alert_views`` keeps one row per session, person and alert (unique), with how many times the
alert's card was shown and when first and last; only the first view of a session is audited
(``alert.view``), so opening the queue again does not fill the audit log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_views',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_digest', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(), nullable=False),
    sa.Column('last_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                            name=op.f('fk_alert_views_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_views')),
    sa.UniqueConstraint('session_digest', 'user_name', 'alert_id',
                        name=op.f('uq_alert_views_session_digest'))
    )
    op.create_index(op.f('ix_alert_views_alert_id'), 'alert_views', ['alert_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_alert_views_alert_id'), table_name='alert_views')
    op.drop_table('alert_views')
