"""Measuring inference latency on this machine, one measurement at a time with our trainings paused."""
