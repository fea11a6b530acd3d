"""Beyond one machine: long clips and whole folders on a Ray cluster, with the frames of a single run.

    from pipeline.cluster import RayConfig, WorkerSpec, convert_on_ray
    results = convert_on_ray([(src, dst)], ConvertOptions(model="toonify"), RayConfig("local", chunk_seconds=60))

Modules: :mod:`.config` (the options), :mod:`.chunks` (spans, chunks, work folder, receipts),
:mod:`.plan` (the driver's sequential passes: tracking, holding and smoothing codes), :mod:`.work`
(the passes a worker runs on a chunk), :mod:`.stitch` (segments into one file), :mod:`.actors` (Ray:
connection, probe, workers), :mod:`.jobs` (one file as a state machine), :mod:`.driver` (the
scheduler and :func:`convert_on_ray`). Ray is imported only when a run starts (``pip install -e
".[ray]"``).
"""
from pipeline.cluster.config import RAY_INSTALL_HINT, RayConfig
from pipeline.cluster.driver import convert_on_ray
from pipeline.cluster.jobs import RayResult

__all__ = ["RAY_INSTALL_HINT", "RayConfig", "RayResult", "convert_on_ray"]
