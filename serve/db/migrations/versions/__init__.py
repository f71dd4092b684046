"""Alembic revisions of the review-queue schema, oldest first."""
