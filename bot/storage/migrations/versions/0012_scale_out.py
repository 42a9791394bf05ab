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

# The shared send windows (bot/transport/shared_limits.py) in one round trip: lock the keys (the
# caller sorts them), then per key the calls in flight and the answers still in its window; a
# place in each when all have room, else each key's wait (-1: every place is in flight, wait for
# an answer). A VOLATILE function reads with a new snapshot per statement, so once the lock is held
# every place the previous holder took is seen. Times are the database's clock.
_TAKE_FN = """
CREATE OR REPLACE FUNCTION linli_take_send_slots(keys text[], windows float8[], counts int[], stale float8)
RETURNS TABLE(slot_key text, slot_id bigint, wait float8) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i int;
    t_now timestamptz;
    n_inflight int;
    n_answered int;
    t_nth timestamptz;
    waits float8[] := '{}';
    room boolean := true;
BEGIN
    PERFORM pg_advisory_xact_lock(1280199681, hashtext(k)) FROM unnest(keys) AS k;
    t_now := clock_timestamp();
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        SELECT count(*) INTO n_inflight FROM send_slots AS s
         WHERE s.key = keys[i] AND s.answered IS NULL AND s.started > t_now - make_interval(secs => stale);
        IF n_inflight >= counts[i] THEN
            waits := waits || (-1)::float8;
        ELSE
            -- The (count - in flight)-th newest answer in the window frees the next place.
            SELECT count(*), min(x.answered) INTO n_answered, t_nth FROM (
                SELECT s.answered FROM send_slots AS s
                 WHERE s.key = keys[i] AND s.answered > t_now - make_interval(secs => windows[i])
                 ORDER BY s.answered DESC LIMIT counts[i] - n_inflight) AS x;
            IF n_answered < counts[i] - n_inflight THEN
                waits := waits || 0::float8;
            ELSE
                waits := waits || greatest(extract(epoch FROM t_nth - t_now)::float8 + windows[i], 1e-9);
            END IF;
        END IF;
        IF waits[i] <> 0 THEN
            room := false;
        END IF;
    END LOOP;
    IF room THEN
        RETURN QUERY INSERT INTO send_slots AS s (key, started)
            SELECT k, t_now FROM unnest(keys) AS k RETURNING s.key::text, s.id::bigint, 0::float8;
    ELSE
        RETURN QUERY SELECT u.k, NULL::bigint, u.w FROM unnest(keys, waits) AS u(k, w);
    END IF;
END
$$
"""


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
        op.execute(_TAKE_FN)
        op.execute(_NOTIFY_FN)
        for table in _TABLES:
            op.execute(f"CREATE TRIGGER linli_people_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION linli_people_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS linli_people_notify ON {table}")
        op.execute("DROP FUNCTION IF EXISTS linli_people_notify()")
        op.execute("DROP FUNCTION IF EXISTS linli_take_send_slots(text[], float8[], int[], float8)")
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_chat_unhandled')
    with op.batch_alter_table('send_slots', schema=None) as batch_op:
        batch_op.drop_index('ix_send_slots_key_answered')
    op.drop_table('send_slots')
