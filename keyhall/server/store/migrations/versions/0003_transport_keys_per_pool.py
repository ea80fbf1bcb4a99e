"""transport keys per user pool, private keys sealed with the key-encryption key

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The old table held one unsealed key pair per kind for the whole server. A migration has no KEK to seal
them with, so the old rows are dropped: the next `keyhall init` / `keyhall serve` makes sealed keys for
every pool. Clients holding the old public keys get 499/2016 once and fetch the new ones.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("transport_keys")
    op.create_table(
        "transport_keys",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("pool_id", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("accept_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_transport_keys_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transport_keys")),
    )
    op.create_index(
        "uq_transport_keys_pool_kind_generation",
        "transport_keys",
        ["pool_id", "kind", "generation"],
        unique=True,
    )


def downgrade() -> None:
    # The sealed per-pool keys cannot go back into the old unsealed table: an older Keyhall makes new
    # keys on its next `init`.
    op.drop_index("uq_transport_keys_pool_kind_generation", table_name="transport_keys")
    op.drop_table("transport_keys")
    op.create_table(
        "transport_keys",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_transport_keys")),
    )
