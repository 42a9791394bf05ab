"""ledger: digest opt-outs and the indexes /stats reads by

Revision ID: 0008
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = '0008'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ledger_digest_optouts',
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_ledger_digest_optouts_community_id_communities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ledger_digest_optouts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', 'user_id', name=op.f('pk_ledger_digest_optouts'))
    )
    with op.batch_alter_table('ledger_digest_optouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_digest_optouts_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('demands', schema=None) as batch_op:
        batch_op.create_index('ix_demands_ledger', ['community_id', 'filed_at', 'state', 'category', 'accepted_at',
                                                    'accept_by', 'resolved_at', 'rating'], unique=False)
        batch_op.create_index('ix_demands_community_state_resolve_by', ['community_id', 'state', 'resolve_by'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('demands', schema=None) as batch_op:
        batch_op.drop_index('ix_demands_community_state_resolve_by')
        batch_op.drop_index('ix_demands_ledger')
    with op.batch_alter_table('ledger_digest_optouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_digest_optouts_user_id'))
    op.drop_table('ledger_digest_optouts')
