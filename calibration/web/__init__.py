"""Zones editor web page served by `roadeye calibrate zones --serve`."""
