"""roadeye models/synth package."""
