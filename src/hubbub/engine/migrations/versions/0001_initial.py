"""Initial schema: users, tokens, rooms, memberships, bans, messages.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("key", sa.Text, primary_key=True),  # lower-cased name
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),  # sha256 hex; tokens are never stored
        sa.Column("user_key", sa.Text, sa.ForeignKey("users.key"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("tokens_user", "tokens", ["user_key"])
    op.create_table(
        "rooms",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False, server_default=""),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("owner_key", sa.Text, sa.ForeignKey("users.key"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("room", sa.Text, sa.ForeignKey("rooms.name"), primary_key=True),
        sa.Column("user_key", sa.Text, sa.ForeignKey("users.key"), primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("joined_at", sa.BigInteger, nullable=False),
    )
    op.create_index("memberships_user", "memberships", ["user_key"])
    op.create_table(
        "bans",
        sa.Column("room", sa.Text, sa.ForeignKey("rooms.name"), primary_key=True),
        sa.Column("user_key", sa.Text, sa.ForeignKey("users.key"), primary_key=True),
        sa.Column("banned_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("room", sa.Text, sa.ForeignKey("rooms.name"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("sender_key", sa.Text, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )
    # The idempotency key of a send: (room, sender, client-chosen id).
    op.create_index(
        "messages_idempotency", "messages", ["room", "sender_key", "client_id"], unique=True
    )


def downgrade() -> None:
    for table in ("messages", "bans", "memberships", "rooms", "tokens", "users"):
        op.drop_table(table)
