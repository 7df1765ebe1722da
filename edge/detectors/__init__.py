"""roadeye edge/detectors package."""
