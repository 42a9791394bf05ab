"""scale-out: shared send windows, a chat's unhandled updates, and cache invalidation by NOTIFY

Revision ID: 0012
Revises: 0002
Create Date: 2026-11-29 04:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = '0012'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL only (several instances share PostgreSQL, never SQLite): every committed change of a
# person, a chat or a community, and every change of someone's admin status, is announced on
# the channel "linli_people", so each instance drops what it remembers of them
# (bot/services/people_sync.py). NOTIFY is sent at commit, and not at all on rollback.
_NOTIFY_FN = """
CREATE OR REPLACE FUNCTION linli_people_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'users' THEN
        payload := 'u:' || r.id;
    ELSIF TG_TABLE_NAME = 'chats' THEN
        payload := 'c:' || r.id;
    ELSIF TG_TABLE_NAME = 'communities' THEN
        payload := 'c:*';
    ELSE  -- chat_members: only a change that makes or unmakes an admin matters
        IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
            RETURN NULL;
        END IF;
        IF NOT ((TG_OP <> 'INSERT' AND OLD.status IN ('creator', 'administrator'))
                OR (TG_OP <> 'DELETE' AND NEW.status IN ('creator', 'administrator'))) THEN
            RETURN NULL;
        END IF;
        payload := 'm:' || r.chat_id || ':' || r.user_id || ':'
                   || CASE WHEN TG_OP = 'DELETE' THEN 'left' ELSE NEW.status END;
    END IF;
    PERFORM pg_notify('linli_people', payload);
    RETURN NULL;
END
$$
"""
_TABLES = ("users", "chats", "communities", "chat_members")


def upgrade() -> None:
    op.create_table('send_slots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('started', bot.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered', bot.storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_slots'))
    )
    with op.batch_alter_table('send_slots', schema=None) as batch_op:
        batch_op.create_index('ix_send_slots_key_answered', ['key', 'answered'], unique=False)
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_chat_unhandled', ['chat_id', 'update_id'], unique=False,
                              postgresql_where=sa.text('handled_at IS NULL'),
                              sqlite_where=sa.text('handled_at IS NULL'))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_NOTIFY_FN)
        for table in _TABLES:
            op.execute(f"CREATE TRIGGER linli_people_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION linli_people_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS linli_people_notify ON {table}")
        op.execute("DROP FUNCTION IF EXISTS linli_people_notify()")
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_chat_unhandled')
    with op.batch_alter_table('send_slots', schema=None) as batch_op:
        batch_op.drop_index('ix_send_slots_key_answered')
    op.drop_table('send_slots')
