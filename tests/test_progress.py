"""progress: the JSON lines (start, paced progress with fps and ETA, done), the bar, and the choice."""
from __future__ import annotations

import io
import json

import pytest

from pipeline import progress
from pipeline.progress import BarProgress, JsonProgress, NullProgress, make_progress


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def now(monkeypatch) -> list[float]:
    """A settable clock for the progress module: ``now[0]`` seconds."""
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    return clock


def test_json_lines_report_every_update_with_no_interval(now):
    out = io.StringIO()
    p = JsonProgress(out, interval=0.0)
    p.start("clip.mp4", 4)
    for _ in range(2):
        now[0] += 0.5
        p.update()
    p.finish(frames=2, seconds=1.0)
    assert lines(out) == [
        {"event": "start", "file": "clip.mp4", "total": 4},
        {"event": "progress", "file": "clip.mp4", "frame": 1, "total": 4, "fps": 2.0, "eta_s": 1.5},
        {"event": "progress", "file": "clip.mp4", "frame": 2, "total": 4, "fps": 2.0, "eta_s": 1.0},
        {"event": "done", "file": "clip.mp4", "frames": 2, "seconds": 1.0},
    ]


def test_json_progress_is_paced_but_the_last_frame_is_always_reported(now):
    out = io.StringIO()
    p = JsonProgress(out, interval=10.0)
    p.start("a", 3)
    now[0] += 1.0
    p.update(2)                                    # 1 s after the start: too soon
    now[0] += 0.5
    p.update()                                     # the last frame: reported anyway
    events = lines(out)
    assert [e["event"] for e in events] == ["start", "progress"]
    assert events[1]["frame"] == 3 and events[1]["eta_s"] == 0.0 and events[1]["fps"] == 2.0


def test_json_progress_without_a_total_has_no_eta():
    out = io.StringIO()
    p = JsonProgress(out, interval=0.0)
    p.start("a", None)
    p.update()
    assert lines(out)[-1]["eta_s"] is None and lines(out)[-1]["total"] is None


def test_bar_writes_to_its_stream_and_closes():
    out = io.StringIO()
    bar = BarProgress(out)
    bar.update()                                   # before start: nothing happens
    bar.start("clip.mp4", 2)
    bar.update(2)
    bar.finish()
    assert "clip.mp4" in out.getvalue() and "2/2" in out.getvalue()
    assert bar.bar is None


def test_make_progress():
    assert isinstance(make_progress("bar"), BarProgress)
    assert isinstance(make_progress("json"), JsonProgress)
    assert isinstance(make_progress("none"), NullProgress)
    with pytest.raises(KeyError):
        make_progress("fancy")
