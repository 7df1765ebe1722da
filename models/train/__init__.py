"""roadeye models/train package."""
