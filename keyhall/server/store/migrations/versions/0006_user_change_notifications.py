"""PostgreSQL: notify listeners when a user changes or an access token is revoked

Each server process keeps the users its signed-in reads found (keyhall.server.store.user_cache) and
LISTENs on ``keyhall_user_changed``; these triggers tell it what to forget. SQLite needs nothing: its
``PRAGMA data_version`` already says whether anything was committed.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION keyhall_notify_user_change() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('keyhall_user_changed', 'u:' || OLD.id);
    ELSE
        PERFORM pg_notify('keyhall_user_changed', 't:' || NEW.jti);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    # pg_notify inside a transaction is delivered at its commit, and not at all on a rollback.
    op.execute(
        "CREATE TRIGGER keyhall_users_changed AFTER UPDATE OR DELETE ON users "
        "FOR EACH ROW EXECUTE FUNCTION keyhall_notify_user_change()"
    )
    op.execute(
        "CREATE TRIGGER keyhall_access_token_revoked AFTER INSERT ON revoked_access_tokens "
        "FOR EACH ROW EXECUTE FUNCTION keyhall_notify_user_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS keyhall_access_token_revoked ON revoked_access_tokens")
    op.execute("DROP TRIGGER IF EXISTS keyhall_users_changed ON users")
    op.execute("DROP FUNCTION IF EXISTS keyhall_notify_user_change()")
