"""Per-room sequence counters: one row per room, locked by each append on PostgreSQL.

Revision ID: 0002
Revises: 0001

The PostgreSQL log assigns `seq` by incrementing its room's row in the transaction that
inserts the message (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`): the row lock,
held until commit, serializes a room's appends across every connection and every node,
so seqs are gapless and commit in order. SQLite keeps its counter in the writer
thread and leaves this table alone (it is harmless there).

Partitioning, when one table of history gets too large: `messages` and `room_seqs`
would become `PARTITION BY HASH (room)` tables with N partitions (every key of
both starts with `room`, so every query of the log prunes to one partition), created
in a PostgreSQL-only revision; the SQL of the log does not change.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_seqs",
        sa.Column("room", sa.Text, sa.ForeignKey("rooms.name"), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    # Rooms that already have messages start from their last seq.
    op.execute(
        "INSERT INTO room_seqs (room, last_seq) SELECT room, MAX(seq) FROM messages GROUP BY room"
    )


def downgrade() -> None:
    op.drop_table("room_seqs")
