"""remux: audio packets copied whole and in order, cut at the trim and at the end (with the one preroll
packet mp4 keeps), audio the container cannot hold re-encoded to the sample, subtitles kept or dropped."""
from __future__ import annotations

import logging
from pathlib import Path

import av
import pytest

from pipeline.errors import InputError
from pipeline.media.remux import Passthrough
from tests.clips import make_clip

AAC = 1024 / 48000                                                 # seconds per AAC packet


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s) if p.size]


def remux(src: Path, dst: Path, origin: float = 0.0, end: float | None = None,
          until: float | None = None) -> Path:
    with av.open(str(dst), "w") as out:
        p = Passthrough(out, src, origin, end)
        try:
            p.pump(until if until is not None else 1e9)
            p.finish(until if until is not None else 1e9)
        finally:
            p.close()
    return dst


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("remux") / "in.mkv", frames=10, fps=10, audio=True, subtitles=True)


def test_packets_are_copied_whole_and_in_order(clip, tmp_path):
    src = audio_packets(clip)
    assert src[0][0] < 0                                          # the AAC encoder's priming packet
    got = audio_packets(remux(clip, tmp_path / "out.mp4"))        # mp4 keeps the packet before t = 0
    assert len(got) == len(src) > 10
    assert [b for _, b in got] == [b for _, b in src]             # not re-encoded
    assert [t for t, _ in got] == pytest.approx([t for t, _ in src], abs=1e-3)
    mkv = audio_packets(remux(clip, tmp_path / "out.mkv"))        # Matroska: from t = 0
    assert [b for _, b in mkv] == [b for t, b in src if t >= 0]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [s.type for s in c.streams] == ["audio", "subtitle"]


def test_trim_and_end_cut_at_the_packet(clip, tmp_path):
    src = audio_packets(clip)
    got = audio_packets(remux(clip, tmp_path / "cut.mkv", origin=0.4, until=0.8))
    kept = [b for t, b in src if 0.4 - 1e-9 <= t < 0.8]
    assert [b for _, b in got] == kept                            # Matroska: no packet before the cut
    assert got[0][0] == pytest.approx(min(t for t, _ in src if t >= 0.4 - 1e-9) - 0.4, abs=1e-3)
    # mp4 also keeps what the decoder needs to start at the cut: the packet over it and the one before
    mp4 = audio_packets(remux(clip, tmp_path / "cut.mp4", origin=0.4, until=0.8))
    preroll = [b for t, b in src if 0.4 - 2 * AAC < t < 0.4 - 1e-9]
    assert len(preroll) == 2
    assert [b for _, b in mp4] == preroll + kept
    assert [t < 0 for t, _ in mp4] == [True, True] + [False] * len(kept)


def test_audio_the_container_cannot_hold_is_re_encoded(tmp_path, caplog):
    src = make_clip(tmp_path / "pcm.mkv", frames=5, fps=10, audio=True, audio_codec="pcm_s16le")
    with caplog.at_level(logging.INFO, logger="pipeline.media.remux"):
        remux(src, tmp_path / "out.webm", origin=0.1, until=0.4)
    with av.open(str(tmp_path / "out.webm")) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "opus"
        samples = sum(f.samples for f in c.decode(a))
    assert "re-encoding to libopus" in caplog.text
    assert abs(samples / 48000 - 0.3) < 0.03                      # cut to the sample (plus codec delay)


def test_subtitles_the_container_cannot_hold_are_dropped(clip, tmp_path, caplog):
    remux(clip, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["audio"]
    assert "dropping srt subtitles" in caplog.text


def test_unreadable_source(tmp_path):
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"not a video")
    with av.open(str(tmp_path / "out.mkv"), "w") as out, pytest.raises(InputError):
        Passthrough(out, bad, 0.0, None)
