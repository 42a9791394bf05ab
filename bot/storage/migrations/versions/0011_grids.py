"""grids and streets

Revision ID: 0011
Revises: 0003
Create Date: 2026-11-29 01:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = '0011'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('grids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('buildings', sa.JSON(), nullable=False),
    sa.Column('leader_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_grids_community_id_communities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['leader_id'], ['users.id'], name=op.f('fk_grids_leader_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grids')),
    sa.UniqueConstraint('community_id', 'name', name='uq_grids_community_name')
    )
    op.create_index(op.f('ix_grids_community_id'), 'grids', ['community_id'], unique=False)
    op.create_index(op.f('ix_grids_leader_id'), 'grids', ['leader_id'], unique=False)
    op.create_table('resident_buildings',
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('building', sa.String(length=32), nullable=False),
    sa.Column('updated_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_resident_buildings_community_id_communities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_resident_buildings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', 'user_id', name=op.f('pk_resident_buildings'))
    )
    op.create_table('streets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_streets_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_streets')),
    sa.UniqueConstraint('code', name=op.f('uq_streets_code'))
    )
    op.create_table('street_communities',
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('street_id', sa.Integer(), nullable=False),
    sa.Column('joined_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_street_communities_community_id_communities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['street_id'], ['streets.id'], name=op.f('fk_street_communities_street_id_streets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', name=op.f('pk_street_communities'))
    )
    op.create_index(op.f('ix_street_communities_street_id'), 'street_communities', ['street_id'], unique=False)
    op.create_table('street_officers',
    sa.Column('street_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', bot.storage.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['street_id'], ['streets.id'], name=op.f('fk_street_officers_street_id_streets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_street_officers_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('street_id', 'user_id', name=op.f('pk_street_officers'))
    )
    op.create_index(op.f('ix_street_officers_user_id'), 'street_officers', ['user_id'], unique=False)
    with op.batch_alter_table('demands', schema=None) as batch_op:
        batch_op.add_column(sa.Column('level', sa.String(length=12), server_default='community', nullable=False))
        batch_op.add_column(sa.Column('grid_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('level_accept_by', bot.storage.models.base.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_demands_grid_id'), ['grid_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_demands_grid_id_grids'), 'grids', ['grid_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('demands', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_demands_grid_id_grids'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_demands_grid_id'))
        batch_op.drop_column('level_accept_by')
        batch_op.drop_column('grid_id')
        batch_op.drop_column('level')
    op.drop_index(op.f('ix_street_officers_user_id'), table_name='street_officers')
    op.drop_table('street_officers')
    op.drop_index(op.f('ix_street_communities_street_id'), table_name='street_communities')
    op.drop_table('street_communities')
    op.drop_table('streets')
    op.drop_table('resident_buildings')
    op.drop_index(op.f('ix_grids_leader_id'), table_name='grids')
    op.drop_index(op.f('ix_grids_community_id'), table_name='grids')
    op.drop_table('grids')
