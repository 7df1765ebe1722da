"""roadeye calibration package."""
