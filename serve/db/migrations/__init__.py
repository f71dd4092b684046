"""Alembic migration scripts for the review queue (run by engine.migrate(), never imported)."""
