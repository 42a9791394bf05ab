"""refresh marks: coalesced edits of in-place messages, correct across instances

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 05:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('refresh_marks',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=40), nullable=True),
    sa.Column('lease_until', bot.storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kind', 'key', name=op.f('pk_refresh_marks'))
    )


def downgrade() -> None:
    op.drop_table('refresh_marks')
