"""Field tests (blue list): consenting volunteers, their planned passes, test alerts

Three new tables: ``field_tests`` (one test of a deployment, its test watchlist, its stored
report), ``field_test_volunteers`` (the consent record and optional self-declared age band, sex
and ethnicity of each volunteer) and ``field_test_passes`` (when each volunteer walks past which
camera). Three nullable columns on ``alerts``, added with ``op.add_column``: ``field_test_id``
and ``field_volunteer_id`` (set at recording time on an alert against a test watchlist: a test
alert, never an operational one; kept when the volunteer's subject is destroyed) and ``latency`` (seconds from the first frame in which the track's face was of
enrolment quality to the alert) and ``in_view`` (seconds from the track's first frame, the
person entering the camera's view, to the alert).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'field_tests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.Integer(), nullable=False),
        sa.Column('watchlist_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('purpose', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('ended_by', sa.String(length=64), nullable=True),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
        sa.Column('report', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                                name=op.f('fk_field_tests_deployment_id_deployments'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['watchlist_id'], ['watchlists.id'],
                                name=op.f('fk_field_tests_watchlist_id_watchlists'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_field_tests')))
    op.create_index(op.f('ix_field_tests_deployment_id'), 'field_tests', ['deployment_id'])
    op.create_table(
        'field_test_volunteers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('field_test_id', sa.Integer(), nullable=False),
        sa.Column('label', sa.String(length=200), nullable=False),
        sa.Column('subject_id', sa.Integer(), nullable=True),
        sa.Column('consent_by', sa.String(length=200), nullable=False),
        sa.Column('consent_at', sa.DateTime(), nullable=False),
        sa.Column('consent_reference', sa.String(length=200), nullable=False),
        sa.Column('age_band', sa.String(length=20), nullable=True),
        sa.Column('sex', sa.String(length=16), nullable=True),
        sa.Column('ethnicity', sa.String(length=32), nullable=True),
        sa.Column('added_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['field_test_id'], ['field_tests.id'],
                                name=op.f('fk_field_test_volunteers_field_test_id_field_tests'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'],
                                name=op.f('fk_field_test_volunteers_subject_id_subjects'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_field_test_volunteers')))
    op.create_table(
        'field_test_passes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('volunteer_id', sa.Integer(), nullable=False),
        sa.Column('camera', sa.String(length=100), nullable=False),
        sa.Column('starts_at', sa.DateTime(), nullable=False),
        sa.Column('ends_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['volunteer_id'], ['field_test_volunteers.id'],
            name=op.f('fk_field_test_passes_volunteer_id_field_test_volunteers'),
            ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_field_test_passes')))
    op.add_column('alerts', sa.Column('field_test_id', sa.Integer(), nullable=True))
    op.add_column('alerts', sa.Column('field_volunteer_id', sa.Integer(), nullable=True))
    op.add_column('alerts', sa.Column('latency', sa.Float(), nullable=True))
    op.add_column('alerts', sa.Column('in_view', sa.Float(), nullable=True))
    op.create_index(op.f('ix_alerts_field_test_id'), 'alerts', ['field_test_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_alerts_field_test_id'), table_name='alerts')
    op.drop_column('alerts', 'in_view')
    op.drop_column('alerts', 'latency')
    op.drop_column('alerts', 'field_volunteer_id')
    op.drop_column('alerts', 'field_test_id')
    op.drop_table('field_test_passes')
    op.drop_table('field_test_volunteers')
    op.drop_index(op.f('ix_field_tests_deployment_id'), table_name='field_tests')
    op.drop_table('field_tests')
