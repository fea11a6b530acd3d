"""Editor plugins that run the pipeline inside a host (VapourSynth)."""
