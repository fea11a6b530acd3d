"""Containers and pixels: probing, timestamps, remuxing, colour conversion, atomic output files."""
