"""Camera sources kept secret; a second officer for a threshold override

Camera sources get an encrypted column (``source_ct``), a redacted display form (``display``)
and a keyed digest; deployments a camera key. The migration cannot read the master key, so it
fills ``display`` and leaves the plaintext in ``source`` (now nullable): the next time the
installation is opened, :func:`openlfr.governance.deployments.seal_sources` encrypts it and
clears it. Deployments get ``threshold_override_confirmed_by``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from openlfr.redact import redact

    sqlite = op.get_bind().dialect.name == "sqlite"
    # deployments: plain ADD COLUMN. On SQLite a batch operation would rebuild the table, and
    # dropping the old one (foreign keys on) would cascade-delete its cameras, statistics and
    # alerts; SQLite adds a column with a REFERENCES clause in place when it defaults to NULL.
    op.add_column('deployments', sa.Column('threshold_override_confirmed_by',
                                           sa.String(length=64), nullable=True))
    if sqlite:
        op.execute("ALTER TABLE deployments ADD COLUMN camera_key_id INTEGER "
                   "REFERENCES data_keys (id) ON DELETE SET NULL")
    else:
        op.add_column('deployments', sa.Column('camera_key_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_deployments_camera_key_id_data_keys'), 'deployments',
                              'data_keys', ['camera_key_id'], ['id'], ondelete='SET NULL')
    # cameras: no table refers to it, so SQLite may rebuild it (to make `source` nullable)
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display', sa.Text(), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('source_ct', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('source_digest', sa.String(length=64), nullable=True))
        batch_op.alter_column('source', existing_type=sa.Text(), nullable=True)
    cameras = sa.table('cameras', sa.column('id', sa.Integer()), sa.column('source', sa.Text()),
                       sa.column('display', sa.Text()))
    conn = op.get_bind()
    for cam_id, source in conn.execute(sa.select(cameras.c.id, cameras.c.source)).all():
        conn.execute(cameras.update().where(cameras.c.id == cam_id)
                     .values(display=redact(source or "")))


def downgrade() -> None:
    """Drops the new columns (sources already sealed stay unreadable to the old version: run
    it only on a database that has not been opened since the upgrade). On SQLite the camera
    key column of deployments stays (dropping it would mean rebuilding the table)."""
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('source_digest')
        batch_op.drop_column('source_ct')
        batch_op.drop_column('display')
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE deployments DROP COLUMN threshold_override_confirmed_by")
        return
    op.drop_constraint(op.f('fk_deployments_camera_key_id_data_keys'), 'deployments',
                       type_='foreignkey')
    op.drop_column('deployments', 'camera_key_id')
    op.drop_column('deployments', 'threshold_override_confirmed_by')
