"""Rooms can be archived and deleted, messages redacted, and accounts deleted.

Revision ID: 0004
Revises: 0003

`rooms.archived` marks a read-only room left out of lists. `rooms.deleted_at` marks a
deleted room: its memberships and bans are gone and its messages redacted, and its row
stays only to hold the name until the grace is over (then the room's rows are purged).
`messages.deleted` marks a redacted message: its body is stored empty, its seq, id,
sender and ts stay. `users.deleted_at` marks a deleted account: its row stays for good,
so the name is never given out again and the messages it sent keep their `from`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "rooms", sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("rooms", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.add_column(
        "messages", sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("users", sa.Column("deleted_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("deleted")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("archived")
