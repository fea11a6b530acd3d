"""The benchmark's timed run: stage accounting, FLOP and peak figures, the report it fills in, on a
tiny model and a small synthetic clip (no asset files, no timed assertions)."""
from __future__ import annotations

import json

import av
import pytest

from pipeline import NoFaceError
from pipeline.convert import ConvertConfig
from pipeline.errors import UsageError
from pipeline.stages.detect_crop import FaceConfig
from pipeline.tools.bench import STAGES, run_bench

FRAMES = 4


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def bench(model, tmp_path_factory):
    """One bench run: 320x240, 4 frames; eyes 64 px apart (scale 1) and padding 32 give a 64x64 crop."""
    workdir = tmp_path_factory.mktemp("bench")
    cfg = ConvertConfig(face=FaceConfig(padding=32))
    report = run_bench(None, model, None, cfg, frames=FRAMES, synthetic_size=(320, 240), workdir=workdir,
                       eye_distance=64.0)
    return report, workdir


# -- one real run ----------------------------------------------------------------------------

def test_every_stage_is_reported_in_order(bench):
    report, _ = bench
    assert [s.name for s in report.stages] == list(STAGES)
    for s in report.stages:
        assert s.frames == FRAMES, s.name
        assert s.seconds >= 0 and s.fps is not None and s.fps > 0, s.name
    assert [s.name for s in report.stages if s.threaded] == ["decode", "detect", "encode"]


def test_shares_add_up_to_the_wall_time(bench):
    report, _ = bench
    main = [s for s in report.stages if s.name != "decode"]     # decode is waited on by face finding
    assert report.stage("decode").share == 0
    assert sum(s.share for s in main) == pytest.approx(1.0, abs=0.05)
    assert sum(s.seconds for s in main) == pytest.approx(report.wall_s, rel=0.05)
    assert report.compute_s == pytest.approx(sum(s.seconds for s in report.stages if not s.threaded))
    assert 0 <= report.encode_flush_s <= report.stage("encode").seconds


def test_frames_counted_are_the_frames_written(bench):
    report, workdir = bench
    assert report.frames_in == report.frames_written == report.frames_with_face == report.faces == FRAMES
    with av.open(report.output) as out:
        assert sum(1 for _ in out.decode(video=0)) == FRAMES
        assert out.streams.audio                                 # the synthetic clip's AAC came through
    assert report.decode_alone.frames == report.detect_alone.frames == report.encode_alone.frames == FRAMES
    assert report.synthetic_detection and report.input == "synthetic"
    assert (workdir / "bench_in.mp4").exists()
    assert report.frame_size == report.output_size == (320, 240)
    assert report.crop_size == (64, 64)


def test_flops_and_peak_are_positive(bench):
    report, _ = bench
    assert report.invert_flops > 0 and report.generate_flops > 0
    assert report.gflops("invert") > 0 and report.gflops("generate") > 0
    assert report.peak_matmul.gflops > 0 and report.peak_conv.gflops > 0
    assert report.fraction_of_conv_peak("generate") > 0


def test_overlap_efficiency_is_a_sane_ratio(bench):
    report, _ = bench
    assert 0 < report.overlap_efficiency <= 1.5
    assert report.slowest in ("decode", "detect", "encode", "compute")


def test_as_dict_round_trips_through_json(bench):
    report, _ = bench
    d = report.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert list(d["stages"]) == list(STAGES)
    assert d["frames"]["written"] == FRAMES and d["crop_size"] == [64, 64]
    assert d["flops"]["generate"]["gflops_s"] > 0 and d["overlap"]["efficiency"] > 0


def test_as_table_names_every_stage(bench):
    report, _ = bench
    table = report.as_table()
    for name in STAGES:
        assert f"\n{name} " in table
    assert "GFLOP/s" in table and "conv peak" in table and "efficiency" in table
    assert "cpu" in table and "fp32" in table


# -- refusals --------------------------------------------------------------------------------

def test_a_real_input_needs_a_detector(bench, model, tmp_path):
    _, workdir = bench
    with pytest.raises(UsageError, match="detector"):
        run_bench(workdir / "bench_in.mp4", model, None, ConvertConfig(), workdir=tmp_path)


def test_no_face_in_the_input_is_an_error(bench, model, tmp_path):
    _, workdir = bench

    class NoFaces:
        def detect(self, pixels):
            return []

    with pytest.raises(NoFaceError, match="no face"):
        run_bench(workdir / "bench_in.mp4", model, NoFaces(), ConvertConfig(), frames=2, workdir=tmp_path)
