"""Alembic migration scripts, shipped inside the package and run programmatically."""
