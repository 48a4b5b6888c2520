"""Tokens become sessions: a public id, last use, and the user agent and address of the login.

Revision ID: 0003
Revises: 0002

The id is what `GET /api/v1/me/sessions` shows and `DELETE /api/v1/me/sessions/{id}`
takes: random, never derived from the token (whose SHA-256 is the primary key and must
not leave the server). Tokens issued before this revision get a random id here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("id", sa.Text, nullable=True))
    op.add_column(
        "tokens", sa.Column("last_used_at", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column("tokens", sa.Column("user_agent", sa.Text, nullable=False, server_default=""))
    op.add_column("tokens", sa.Column("address", sa.Text, nullable=False, server_default=""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE tokens SET id = replace(gen_random_uuid()::text, '-', '')")
    else:
        op.execute("UPDATE tokens SET id = lower(hex(randomblob(16)))")
    op.execute("UPDATE tokens SET last_used_at = created_at")
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("id", existing_type=sa.Text, nullable=False)
    op.create_index("tokens_id", "tokens", ["id"], unique=True)


def downgrade() -> None:
    op.drop_index("tokens_id", "tokens")
    with op.batch_alter_table("tokens") as batch:
        for column in ("address", "user_agent", "last_used_at", "id"):
            batch.drop_column(column)
