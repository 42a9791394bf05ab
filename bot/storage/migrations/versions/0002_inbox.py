"""inbox: every update stored before it is confirmed to Telegram, marked when handled

Revision ID: 0002
Revises: 0003
Create Date: 2026-11-29 01:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = '0002'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.BigInteger(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('received_at', bot.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('handled_at', bot.storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('update_id', name=op.f('pk_inbox'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_handled_at', ['handled_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_user_id'))
        batch_op.drop_index('ix_inbox_handled_at')
    op.drop_table('inbox')
