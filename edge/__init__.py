"""roadeye edge package."""
