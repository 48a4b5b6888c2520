"""The room log holds updates too: edits, deletes, reactions and topics (protocol v2, 1).

Revision ID: 0005
Revises: 0004

Every entry stays a row of `messages`, in the room's one seq space. `kind` says which
("message", "edit", "delete", "react", "unreact", "topic"); an update names the message
it is about in `target`, and carries its own text: an edit its new `body`, a reaction
its `reaction_key`, a topic change its `topic` (a delete's author is its sender). A
message names the message it answers in `reply_to` and its thread's root in `thread`.

The rest is the current state, kept on the message's row so history reads one row per
message: `current_body` and `edited` (the latest edit's body and ts), and on a thread's
root `reply_count`, `last_reply_seq` and `last_reply_ts`. The reactions that stand are
rows of `reactions`, one per (message, key, user): the primary key makes a second one
a conflict; `at_seq` (the seq of the react) orders keys and users by when they came.

The partial indexes serve history (messages outside threads, newest first), a thread's
page, and the updates of one message (its edits, its redaction).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIMELINE = "kind = 'message' AND thread IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("kind", sa.Text, nullable=False, server_default="message"))
        for name in ("target", "reply_to", "thread", "edited", "last_reply_seq", "last_reply_ts"):
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))
        for name in ("reaction_key", "topic", "current_body"):
            batch.add_column(sa.Column(name, sa.Text, nullable=True))
        batch.add_column(
            sa.Column("reply_count", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
    op.create_index(
        "messages_timeline",
        "messages",
        ["room", "seq"],
        sqlite_where=sa.text(TIMELINE),
        postgresql_where=sa.text(TIMELINE),
    )
    op.create_index(
        "messages_thread",
        "messages",
        ["room", "thread", "seq"],
        sqlite_where=sa.text("thread IS NOT NULL"),
        postgresql_where=sa.text("thread IS NOT NULL"),
    )
    op.create_index(
        "messages_target",
        "messages",
        ["room", "target", "seq"],
        sqlite_where=sa.text("target IS NOT NULL"),
        postgresql_where=sa.text("target IS NOT NULL"),
    )
    op.create_table(
        "reactions",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("reaction_key", sa.Text, primary_key=True),
        sa.Column("user_key", sa.Text, primary_key=True),
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("at_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reactions")
    for index in ("messages_target", "messages_thread", "messages_timeline"):
        op.drop_index(index, "messages")
    with op.batch_alter_table("messages") as batch:
        for name in (
            "reply_count",
            "current_body",
            "topic",
            "reaction_key",
            "last_reply_ts",
            "last_reply_seq",
            "edited",
            "thread",
            "reply_to",
            "target",
            "kind",
        ):
            batch.drop_column(name)
