"""roadeye models package."""
