"""Review items keep the text read from their picture (OCR), shown to reviewers as evidence.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Nullable: items without a picture, from a model that reads no text in pictures, or enqueued before this
revision have none. A frozen snapshot: it never imports serve.db.schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("ocr_text", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("ocr_text")
