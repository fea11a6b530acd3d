"""The benchmark's report on hand-made figures: GFLOP/s, fractions of the peak, JSON fields and rounding,
the table's rows."""
from __future__ import annotations

import json

import pytest

from pipeline.tools.bench_report import AloneRun, BenchReport, StageRow
from pipeline.tools.timing import PeakResult

NAMES = ("decode", "detect", "invert", "smooth", "generate", "paste", "encode")


def report(**kw) -> BenchReport:
    seconds = {"decode": 0.5, "detect": 0.25, "invert": 1.0, "smooth": 0.0, "generate": 2.0, "paste": 0.25,
               "encode": 0.5}
    wall = 4.0
    rows = [StageRow(n, 10, s, 0.0 if n == "decode" else s / wall, 10 / s if s else None,
                     n in ("decode", "detect", "encode")) for n, s in seconds.items()]
    fields = dict(
        input="synthetic", output="/tmp/out.mp4", synthetic_detection=True, device="cpu (2 threads)",
        precision="fp32 weights", batch_size=4, generate_batch_size=2, style_code="smoothed",
        frame_size=(320, 240), output_size=(320, 240), crop_size=(64, 48), frames_in=10, frames_written=10,
        frames_with_face=10, faces=10, wall_s=wall, stages=rows, encode_flush_s=0.125,
        decode_alone=AloneRun(10, 0.4), detect_alone=AloneRun(10, 0.2), encode_alone=AloneRun(10, 0.0),
        invert_flops=3 * 10**9, generate_flops=8 * 10**9,
        peak_matmul=PeakResult("matmul 64", 2 * 10**9, 0.5, 4.0), peak_conv=PeakResult("conv", 10**9, 0.125, 8.0),
        compute_s=3.25, slowest="compute", overlap_efficiency=3.25 / 4.0)
    return BenchReport(**(fields | kw))


def test_gflops_and_fraction_of_the_conv_peak():
    r = report()
    assert r.gflops("invert") == pytest.approx(3.0)               # 3e9 FLOPs in 1 s
    assert r.gflops("generate") == pytest.approx(4.0)             # 8e9 in 2 s
    assert r.fraction_of_conv_peak("generate") == pytest.approx(0.5)
    zero = report(stages=[StageRow(n, 0, 0.0, 0.0, None) for n in NAMES])
    assert zero.gflops("invert") is None and zero.fraction_of_conv_peak("invert") is None


def test_alone_runs():
    assert AloneRun(10, 0.4).fps == pytest.approx(25.0)
    assert AloneRun(10, 0.0).fps is None
    assert AloneRun(3, 1 / 3).as_dict() == {"frames": 3, "seconds": 0.33333, "fps": 9.0}


def test_json_fields():
    d = report().as_dict()
    assert json.loads(json.dumps(d)) == d
    assert list(d) == ["input", "output", "synthetic_detection", "device", "precision", "batch_size", "style_code",
                       "frame_size", "output_size", "crop_size", "generated_size", "crop_sizes", "frames", "wall_s",
                       "stages", "encode_flush_s", "decode_alone", "detect_alone", "encode_alone", "flops", "peak",
                       "overlap"]
    assert d["batch_size"] == {"invert": 4, "generate": 2}
    assert d["crop_size"] == [64, 48] and d["generated_size"] == [256, 192]
    assert d["stages"]["generate"] == {"frames": 10, "seconds": 2.0, "share": 0.5, "fps": 5.0,
                                       "fps_basis": "own time", "main_thread": "working"}
    assert d["stages"]["encode"]["fps_basis"] == "alone" and d["stages"]["encode"]["main_thread"] == "waiting"
    assert d["flops"]["invert"] == {"per_face": 3 * 10**8, "total": 3 * 10**9, "gflops_s": 3.0,
                                    "fraction_of_conv_peak": 0.375}
    assert d["peak"]["conv"] == {"what": "conv", "flops": 10**9, "seconds": 0.125, "gflops_s": 8.0}
    assert d["encode_alone"] == {"frames": 10, "seconds": 0.0, "fps": None}
    assert d["overlap"] == {"wall_s": 4.0, "compute_s": 3.25, "decode_alone_s": 0.4, "detect_alone_s": 0.2,
                            "encode_alone_s": 0.0, "slowest": "compute", "efficiency": 0.8125}


def test_table_rows():
    lines = report().as_table().splitlines()
    assert lines[0] == "input   synthetic (320x240, 10 frames, synthetic face detection) -> /tmp/out.mp4"
    assert lines[1] == "model   crop 64x48 -> 256x192, batch 4/2 (invert/generate), style codes smoothed"
    row = {ln.split()[0]: ln for ln in lines[5:13]}
    assert list(row) == [*NAMES, "total"]
    assert row["generate"].split() == ["generate", "10", "2.000", "50.0%", "5.0"]
    assert row["smooth"].split() == ["smooth", "10", "0.000", "0.0%", "-"]
    assert row["total"].split() == ["total", "10", "4.000", "100.0%", "2.5"]
    assert "(flush at the end 0.125 s)" in row["encode"]
    assert any(ln.startswith("generate") and "4.00 GFLOP/s  (0.800 GFLOP/face)  = 50.0% of conv peak" in ln
               for ln in lines)
    assert lines[-1].endswith("compute 3.250) -> efficiency 0.81")
