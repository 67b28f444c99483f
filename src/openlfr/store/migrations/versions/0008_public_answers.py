"""Residents' questions: a reference for the sender, and answers published on the public pages

``public_questions`` gains ``reference`` (a short random reference, unique; questions already
stored get one here), and ``published_by``, ``published_at``, ``public_text`` and
``public_answer``: the redacted question and answer an overseer published.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 12:30:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# The reference format of this revision, written out here so that the migration does not
# change when the application's code does (openlfr.governance.questions.new_reference).
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"Q-{chars[:4]}-{chars[4:]}"


def upgrade() -> None:
    with op.batch_alter_table('public_questions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('published_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('published_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('public_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('public_answer', sa.Text(), nullable=True))
    questions = sa.table('public_questions', sa.column('id', sa.Integer()),
                         sa.column('reference', sa.String()))
    conn = op.get_bind()
    taken: set[str] = set()
    for (qid,) in conn.execute(sa.select(questions.c.id)).all():
        ref = new_reference()
        while ref in taken:
            ref = new_reference()
        taken.add(ref)
        conn.execute(questions.update().where(questions.c.id == qid).values(reference=ref))
    with op.batch_alter_table('public_questions', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_public_questions_reference'),
                                          ['reference'])


def downgrade() -> None:
    with op.batch_alter_table('public_questions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_public_questions_reference'), type_='unique')
        batch_op.drop_column('public_answer')
        batch_op.drop_column('public_text')
        batch_op.drop_column('published_at')
        batch_op.drop_column('published_by')
        batch_op.drop_column('reference')
