"""Measuring the pipeline: the benchmark, stage timing, flicker metrics."""
