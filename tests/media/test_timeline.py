"""timeline: source pts shifted by the trim start, dropped outside the window, made strictly
increasing, converted between time bases; frame durations, the last one's, and packets timed."""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipeline.media.media_info import VideoInfo
from pipeline.media.timeline import Timeline

TB = Fraction(1, 20)


def info(fps: Fraction | None = Fraction(10), start_time: float = 0.0, time_base: Fraction = TB) -> VideoInfo:
    return VideoInfo(path=Path("in.mkv"), width=64, height=48, rotation=0, fps=fps, time_base=time_base,
                     frame_count=10, duration=1.0, codec="h264", pix_fmt="yuv420p", bit_depth=8,
                     start_time=start_time)


def test_untrimmed_pts_are_kept_and_durations_follow_the_gaps():
    t = Timeline(info())
    assert [t.place(p) for p in (0, 2, 3, 7)] == [0, 2, 3, 7]                # variable frame rate stays
    assert t.last_duration() == 4                                           # as long as the one before
    assert t.end_seconds() == pytest.approx(11 / 20)
    assert t.time_base == TB and t.dropped == 0


def test_one_frame_lasts_the_nominal_frame_time():
    t = Timeline(info())
    assert t.place(0) == 0 and t.last_duration() == 2                       # 1 / (10 fps * 1/20 s)
    assert Timeline(info(fps=None)).place(0) == 0


def test_trim_shifts_drops_and_ends():
    t = Timeline(info(), start=0.5, end=1.0)                                # pts 10 .. 20 in 1/20 s
    assert t.place(8) is None and t.place(9) is None                        # before the start
    assert [t.place(p) for p in (10, 12, 16, 19)] == [0, 2, 6, 9]
    assert t.place(20) is None                                              # at the end: outside
    assert t.dropped == 3
    assert t.last_duration() == 1                                           # step 3, but the end is 1 tick away
    assert t.source_seconds(2) == pytest.approx(0.6)
    assert t.end_seconds() == pytest.approx(1.0)


def test_start_time_of_the_stream_is_the_origin():
    t = Timeline(info(start_time=1.0), start=0.25)                          # source 1.25 s is t = 0
    assert t.origin_s == 1.25
    assert t.place(25) == 0 and t.place(26) == 1
    assert t.source_seconds(1) == pytest.approx(1.3)


def test_non_increasing_timestamps_move_forward_with_one_warning(caplog):
    t = Timeline(info(), label="out.mkv")
    with caplog.at_level(logging.DEBUG, logger="pipeline.media.timeline"):
        assert [t.place(p) for p in (5, 5, 4, 9)] == [5, 6, 7, 9]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "out.mkv" in warnings[0].getMessage()


def test_other_time_bases_are_converted():
    t = Timeline(info())
    assert t.place(1000, Fraction(1, 1000)) == 20                           # 1 s
    assert t.place(1051, Fraction(1, 1000)) == 21                           # 1.051 s rounds to 21/20


def test_packets_get_back_the_durations_the_encoder_lost():
    t = Timeline(info())
    t.hold(0, 2)
    t.hold(2, 5)
    packets = []
    for pts in (2, 0, 4):                                                    # reordered; 4 was never held
        p = av.Packet(b"x")
        p.pts, p.duration = pts, 1
        packets.append(p)
    assert [p.duration for p in t.timed(packets)] == [5, 2, 1]
