"""Alembic revisions, oldest first by their revision chain."""
