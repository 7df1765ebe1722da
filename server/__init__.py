"""roadeye server package."""
