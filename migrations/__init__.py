"""Alembic environment and versions for the RemoteGPU schema. Released migrations are never edited."""
