"""Chunk planning without Ray: spans and chunks partition the frames, boundaries prefer shot cuts,
a short tail joins the chunk before; receipts notice a changed segment; no Ray: one clear line."""
from __future__ import annotations

import sys

import pytest

from pipeline.cluster.chunks import WorkFolder, find_spans, plan_chunks
from pipeline.errors import UsageError


def test_spans_cover_the_trim_without_overlap():
    spans = find_spans(2.0, 65.0, 100.0, 20.0)
    assert spans[0].start == 2.0 and spans[-1].end == 65.0
    assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))
    assert find_spans(None, None, 10.0, 60.0)[0].start is None          # a short clip: one span


def test_chunks_partition_frames_and_snap_to_a_cut():
    times = [i / 10 for i in range(100)]                                 # 10 s at 10 frames/s
    cuts = [i == 31 for i in range(100)]
    chunks = plan_chunks(list(range(100)), times, cuts, 3.0, None, None)
    assert chunks[0].first == 0 and chunks[-1].stop == 100
    assert all(a.stop == b.first for a, b in zip(chunks, chunks[1:], strict=False))
    assert chunks[1].first == 31                                         # moved from 30 to the cut
    assert chunks[1].span.start == times[31] and chunks[0].span.end == times[31]
    assert chunks[-1].frames >= 3.0 * 10 * 0.25                          # no stub at the end


def test_receipt_checks_the_segment(tmp_path):
    chunks = plan_chunks(list(range(10)), [i / 10 for i in range(10)], [False] * 10, 1.0, None, None)
    folder = WorkFolder.for_output(tmp_path / "out.mkv", None, "k1")
    folder.path.mkdir(parents=True)
    seg = folder.segment(chunks[0], ".mkv")
    seg.write_bytes(b"frames")
    folder.write_receipt(chunks[0], seg)
    assert folder.valid_receipt(chunks[0], seg)
    seg.write_bytes(b"damaged")
    assert not folder.valid_receipt(chunks[0], seg)
    assert not WorkFolder(folder.path, "other-key").valid_receipt(chunks[0], seg)


def test_without_ray_one_line_says_how_to_install(monkeypatch):
    from pipeline.cluster.actors import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r'pip install -e "\.\[ray\]"'):
        import_ray()
