"""Second opinions: decisions are unique per (item, reviewer) instead of per item.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-03

A decided item can be re-opened for a second reviewer (`ReviewQueue.request_second_review`), so inter-reviewer
agreement can be measured; one reviewer still decides an item at most once. Existing rows satisfy the new
constraint as they are (one decision per item). A frozen snapshot: it never imports serve.db.schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "uq_decisions_item_reviewer"
PG_OLD = "decisions_item_id_key"  # PostgreSQL's name for 0001's unnamed UNIQUE (item_id)
# SQLite keeps 0001's UNIQUE (item_id) unnamed; this convention names it during the batch rebuild so it can be dropped.
SQLITE_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(PG_OLD, "decisions", type_="unique")
        op.create_unique_constraint(NEW, "decisions", ["item_id", "reviewer"])
        return
    with op.batch_alter_table("decisions", recreate="always", naming_convention=SQLITE_NAMING) as batch:
        batch.drop_constraint("uq_decisions_item_id", type_="unique")
        batch.create_unique_constraint(NEW, ["item_id", "reviewer"])


def downgrade() -> None:
    doubled = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM (SELECT item_id FROM decisions GROUP BY item_id HAVING COUNT(*) > 1) AS d")).scalar()
    if doubled:
        raise RuntimeError(f"cannot downgrade below 0003: {doubled} item(s) have more than one decision; "
                           "delete the later decisions first if losing them is intended")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(NEW, "decisions", type_="unique")
        op.create_unique_constraint(PG_OLD, "decisions", ["item_id"])
        return
    with op.batch_alter_table("decisions", recreate="always") as batch:
        batch.drop_constraint(NEW, type_="unique")
        batch.create_unique_constraint("uq_decisions_item_id", ["item_id"])
